//! The real backing services, isolated per test: a fresh PostgreSQL
//! database, a unique NATS stream prefix, or a temporary directory for the
//! embedded SQLite files. Each is removed when dropped.

use std::path::PathBuf;
use std::sync::Arc;

use eventlog::nats::NatsLog;
use eventlog::sqlite::SqliteLog;
use eventlog::EventLog;
use store::Store;

/// The NATS server every machine runs (see README).
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// The PostgreSQL server every machine runs, as its superuser (trust auth).
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh empty directory.
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique("mr-test-"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL database, dropped (connections and all) on drop.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates the database.
    pub async fn new() -> TestDb {
        let name = unique("mr_test_");
        let admin = Store::connect(POSTGRES_ADMIN_URL)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (see README)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin.pool)
            .await
            .expect("create test database");
        admin.pool.close().await;
        TestDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop is synchronous: a short-lived runtime on its own thread does the async work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Store::connect(POSTGRES_ADMIN_URL).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin.pool)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// An event log and a store, of one deployment kind, cleaned up on drop.
pub struct Backends {
    pub log: Arc<dyn EventLog>,
    pub store: Store,
    /// Set for NATS: how to reach the same stream again.
    pub nats_prefix: Option<String>,
    nats: Option<Arc<NatsLog>>,
    _db: Option<TestDb>,
    /// Where the embedded files live (kept for the test's lifetime).
    pub dir: TempDir,
}

impl Backends {
    /// NATS JetStream and PostgreSQL, as distributed deployments run.
    pub async fn distributed() -> Backends {
        let prefix = unique("t");
        let nats = Arc::new(
            NatsLog::connect(NATS_URL, &prefix)
                .await
                .expect("NATS with JetStream on 127.0.0.1:4222 (see README)"),
        );
        let db = TestDb::new().await;
        let store = Store::connect(&db.url).await.expect("test database");
        Backends {
            log: Arc::clone(&nats) as Arc<dyn EventLog>,
            store,
            nats_prefix: Some(prefix),
            nats: Some(nats),
            _db: Some(db),
            dir: TempDir::new(),
        }
    }

    /// The SQLite event log and store, as `modelrouter up` runs.
    pub async fn embedded() -> Backends {
        let dir = TempDir::new();
        let log = SqliteLog::open(&dir.0.join("events.db"))
            .await
            .expect("embedded log");
        let store = Store::connect(&format!("sqlite:{}", dir.0.join("ledger.db").display()))
            .await
            .expect("embedded store");
        Backends {
            log: Arc::new(log),
            store,
            nats_prefix: None,
            nats: None,
            _db: None,
            dir,
        }
    }

    /// Deletes the NATS stream and buckets (call at the end of a test).
    pub async fn cleanup(self) {
        if let Some(nats) = &self.nats {
            let _ = nats.destroy(&["accounts"]).await;
        }
        self.store.pool.close().await;
    }
}
