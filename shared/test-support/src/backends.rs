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

/// A NATS server of a test's own (JetStream, file storage in a temporary
/// directory), which the test may stop and start again; killed on drop.
pub struct OwnNats {
    pub url: String,
    port: u16,
    dir: TempDir,
    /// The largest message the server accepts, when not NATS's default (1 MiB).
    max_payload: Option<usize>,
    child: Option<std::process::Child>,
}

impl OwnNats {
    /// Starts `/usr/sbin/nats-server` on a free port and waits until it accepts connections.
    pub async fn start() -> OwnNats {
        OwnNats::start_with(None).await
    }

    /// The same, refusing messages over `max_payload` bytes.
    pub async fn with_max_payload(max_payload: usize) -> OwnNats {
        OwnNats::start_with(Some(max_payload)).await
    }

    async fn start_with(max_payload: Option<usize>) -> OwnNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = OwnNats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir: TempDir::new(),
            max_payload,
            child: None,
        };
        nats.restart().await;
        nats
    }

    /// Kills the server (SIGKILL, as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and storage.
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = std::process::Command::new("/usr/sbin/nats-server");
        command
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.0.join("store"));
        if let Some(bytes) = self.max_payload {
            let config = self.dir.0.join("nats.conf");
            std::fs::write(&config, format!("max_payload: {bytes}\n")).expect("nats config");
            command.arg("-c").arg(config);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
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
        Backends::distributed_on(NATS_URL).await
    }

    /// The same on the NATS server at `url` (a test's own server).
    pub async fn distributed_on(url: &str) -> Backends {
        let prefix = unique("t");
        let nats = Arc::new(
            NatsLog::connect(url, &prefix)
                .await
                .expect("NATS with JetStream (see README)"),
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
            let _ = nats.destroy().await;
        }
        self.store.pool.close().await;
    }
}

impl Backends {
    /// The gateway's link to this backbone, as gateway `id` (its journal in `dir`).
    pub async fn gateway_events(&self, id: &str) -> gateway::Events {
        let publisher = gateway::usage::Publisher::start(
            Arc::clone(&self.log),
            &self.dir.0,
            Some(id),
            gateway::usage::DEFAULT_LINGER,
        )
        .expect("usage journal");
        let accounts =
            gateway::accounts::Accounts::new(publisher.instance().to_owned(), Default::default());
        accounts
            .follow(gateway::follow::Source::new(
                Arc::clone(&self.log),
                events::ACCOUNTS_BUCKET,
                None,
            ))
            .await
            .expect("account states load");
        gateway::Events {
            publisher,
            accounts,
        }
    }

    /// A ledger folding this backbone's events until the task is aborted.
    pub async fn spawn_ledger(&self) -> tokio::task::JoinHandle<()> {
        self.spawn_ledger_charging(None).await
    }

    /// The same, charging auto-recharges through `stripe` (a decline may be
    /// retried at once).
    pub async fn spawn_ledger_charging(
        &self,
        stripe: Option<payments::stripe::Stripe>,
    ) -> tokio::task::JoinHandle<()> {
        // As shipped: a batch gathers for the default linger.
        let mut ledger = ledger::Ledger::new(Arc::clone(&self.log), self.store.clone())
            .await
            .expect("ledger starts")
            .with_linger(ledger::service::DEFAULT_LINGER);
        if let Some(stripe) = stripe {
            ledger = ledger.with_charger(ledger::payments::Charger::new(
                stripe,
                Arc::clone(&self.log),
                self.store.clone(),
                chrono::Duration::zero(),
            ));
        }
        tokio::spawn(async move { ledger.run(std::future::pending()).await })
    }

    /// Appends `event` as a service would.
    pub async fn publish(&self, event: events::Event) {
        self.append(&events::Envelope::new(event)).await;
    }

    /// Appends `envelope` to the log as its one record.
    pub async fn append(&self, envelope: &events::Envelope) {
        self.log
            .append(
                envelope.event.subject(),
                &envelope.id.to_string(),
                &envelope.encode(),
            )
            .await
            .expect("append");
    }

    /// Appends `envelopes`, one record each, in appends of 500 records (as
    /// a gateway's publisher sends a backlog).
    pub async fn append_all(&self, envelopes: &[events::Envelope]) {
        for chunk in envelopes.chunks(500) {
            let encoded: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|e| (e.id.to_string(), e.encode()))
                .collect();
            let items: Vec<eventlog::Outgoing> = chunk
                .iter()
                .zip(&encoded)
                .map(|(e, (id, payload))| eventlog::Outgoing {
                    subject: e.event.subject(),
                    id,
                    payload,
                })
                .collect();
            self.log.append_batch(&items).await.expect("append");
        }
    }

    /// Usage events the ledger has applied.
    pub async fn usage_applied(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(&self.store.pool)
            .await
            .unwrap_or(0)
    }

    /// Waits (at most `within`) until the ledger has applied `n` usage events.
    pub async fn wait_usage(&self, n: i64, within: std::time::Duration) -> i64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let applied = self.usage_applied().await;
            if applied >= n || tokio::time::Instant::now() >= deadline {
                return applied;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The account's balance in the ledger's store.
    pub async fn balance(&self, account: events::AccountId) -> Option<money::Money> {
        let nanos: Option<i64> =
            sqlx::query_scalar("SELECT balance FROM balances WHERE account = $1")
                .bind(account.to_string())
                .fetch_optional(&self.store.pool)
                .await
                .ok()
                .flatten();
        nanos.map(money::Money::from_nanos)
    }
}

/// A paid chat `usage_recorded` event of `account` costing `cost`, served by
/// gateway `gw-test` as its `seq`-th event.
pub fn usage_event(account: events::AccountId, seq: u64, cost: money::Money) -> events::Envelope {
    use events::{Origin, Outcome, RequestKind, Timings, Tokens, UsageRecorded};
    events::Envelope::new(events::Event::UsageRecorded(Box::new(UsageRecorded {
        request_id: format!("req_{seq}"),
        account,
        key: "abcdef012345".into(),
        kind: RequestKind::Chat,
        model: "gpt-4.1".into(),
        provider: "openai".into(),
        tier: Some("standard".into()),
        auto: None,
        prefer: None,
        tokens: Tokens {
            input: 100,
            output: 10,
            ..Default::default()
        },
        cost,
        free: cost == money::Money::ZERO,
        attempts: Vec::new(),
        timings: Timings {
            total_ms: 12,
            first_byte_ms: None,
        },
        outcome: Outcome::Completed,
        finish_reasons: Vec::new(),
        user: None,
        tags: Vec::new(),
        origin: Origin {
            gateway: "gw-test".into(),
            seq,
            instance: None,
        },
    })))
}
