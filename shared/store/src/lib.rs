//! Where projections live: PostgreSQL (distributed) or SQLite (embedded),
//! behind one sqlx `AnyPool`, with the schema from `migrations/`.
//!
//! Queries are written once for both: `$1`-style parameters in order of
//! first use (SQLite binds them by position too), `ON CONFLICT` upserts,
//! and only integer, text and byte columns (ids and times as text, amounts
//! as integer nano-dollars).

pub mod rows;

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `postgres://…` nor `sqlite:…`.
    #[error("database URL `{0}`: use postgres://… or sqlite:path")]
    Url(String),
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A newer build migrated the database: this build's statements may
    /// no longer fit its tables (say, writing to what is now a view), so
    /// it refuses to start rather than fail every write while serving.
    #[error("the database's schema is at migration {found}, newer than this build's last ({known}): run the build that migrated it, or a newer one")]
    Newer { found: i64, known: i64 },
    /// A migration failed; the database is as before it.
    #[error("migration {version} ({name}): {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
}

/// Which database a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A pool and what is behind it.
#[derive(Debug, Clone)]
pub struct Store {
    /// The pool; queries are portable between the backends (see above).
    pub pool: AnyPool,
    /// The database kind.
    pub backend: Backend,
}

/// The PostgreSQL advisory lock key held while migrating ("mr-migr" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x006d_722d_6d69_6772;

/// A section only one process at a time runs against this database, held
/// until dropped or [`Exclusive::release`]d: on PostgreSQL a transaction
/// holding an advisory lock (so every replica waits for it), on SQLite
/// nothing (one process owns the file, and serialises within itself).
pub struct Exclusive(Option<sqlx::Transaction<'static, sqlx::Any>>);

impl Exclusive {
    /// Ends the section now rather than when the guard's connection is
    /// next reused.
    pub async fn release(self) -> Result<(), StoreError> {
        if let Some(tx) = self.0 {
            tx.commit().await?;
        }
        Ok(())
    }
}

/// One migration: its number, name and SQL per backend.
struct Migration {
    version: i64,
    name: &'static str,
    postgres: &'static str,
    sqlite: &'static str,
}

impl Migration {
    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Postgres => self.postgres,
            Backend::Sqlite => self.sqlite,
        }
    }
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger",
        postgres: include_str!("../../../migrations/postgres/0001_ledger.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0001_ledger.sql"),
    },
    Migration {
        version: 2,
        name: "control_plane",
        postgres: include_str!("../../../migrations/postgres/0002_control_plane.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0002_control_plane.sql"),
    },
    Migration {
        version: 3,
        name: "usage_origins",
        postgres: include_str!("../../../migrations/postgres/0003_usage_origins.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0003_usage_origins.sql"),
    },
    Migration {
        version: 4,
        name: "access_lifecycle",
        postgres: include_str!("../../../migrations/postgres/0004_access_lifecycle.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0004_access_lifecycle.sql"),
    },
    Migration {
        version: 5,
        name: "billing",
        postgres: include_str!("../../../migrations/postgres/0005_billing.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0005_billing.sql"),
    },
    Migration {
        version: 6,
        name: "request_lookup",
        postgres: include_str!("../../../migrations/postgres/0006_request_lookup.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0006_request_lookup.sql"),
    },
    Migration {
        version: 7,
        name: "one_request_index",
        postgres: include_str!("../../../migrations/postgres/0007_one_request_index.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0007_one_request_index.sql"),
    },
    Migration {
        version: 8,
        name: "telemetry",
        postgres: include_str!("../../../migrations/postgres/0008_telemetry.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0008_telemetry.sql"),
    },
    Migration {
        version: 9,
        name: "request_log",
        postgres: include_str!("../../../migrations/postgres/0009_request_log.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0009_request_log.sql"),
    },
    Migration {
        version: 10,
        name: "key_limits",
        postgres: include_str!("../../../migrations/postgres/0010_key_limits.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0010_key_limits.sql"),
    },
    Migration {
        version: 11,
        name: "key_budgets",
        postgres: include_str!("../../../migrations/postgres/0011_key_budgets.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0011_key_budgets.sql"),
    },
    Migration {
        version: 12,
        name: "alerts",
        postgres: include_str!("../../../migrations/postgres/0012_alerts.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0012_alerts.sql"),
    },
    Migration {
        version: 13,
        name: "key_totals",
        postgres: include_str!("../../../migrations/postgres/0013_key_totals.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0013_key_totals.sql"),
    },
    Migration {
        version: 14,
        name: "requests_claim",
        postgres: include_str!("../../../migrations/postgres/0014_requests_claim.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0014_requests_claim.sql"),
    },
    Migration {
        version: 15,
        name: "applied_events_by_account",
        postgres: include_str!("../../../migrations/postgres/0015_applied_events_by_account.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0015_applied_events_by_account.sql"),
    },
    Migration {
        version: 16,
        name: "room_for_updates",
        postgres: include_str!("../../../migrations/postgres/0016_room_for_updates.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0016_room_for_updates.sql"),
    },
    Migration {
        version: 17,
        name: "usage_lines_from_requests",
        postgres: include_str!("../../../migrations/postgres/0017_usage_lines_from_requests.sql"),
        sqlite: include_str!("../../../migrations/sqlite/0017_usage_lines_from_requests.sql"),
    },
];

static DRIVERS: Once = Once::new();

/// Each SQLite connection's settings:
/// - 16 KiB pages in a database created with them (an existing file keeps
///   its own): a batch's rows and index entries fill a quarter as many
///   pages, each a WAL frame written and later checkpointed with a
///   syscall apiece; `up`'s SQLite threads took 4–18% less CPU a request
///   (docs/PERFORMANCE.md);
/// - WAL, and an fsync of it at every commit (`FULL`): a committed batch
///   survives power loss, since its events' acks are in another file;
/// - a larger WAL between checkpoints (32 MiB, in pages of the file's own
///   size, instead of SQLite's 1,000 pages): the ledger's batches rewrite
///   the same index pages, which a checkpoint then writes back once instead
///   of every few batches;
/// - a 32 MiB page cache (SQLite's default is 2): a batch's rows land on
///   index pages all over the account-keyed indexes; the cache fills only
///   as pages are read, so an idle process does not pay for it;
/// - temporary storage in memory: a batch's statements need statement
///   journals and sorts past SQLite's in-memory spill size, which otherwise
///   each open, write and delete a file under `/var/tmp` (about a dozen a
///   second in `up` at 200 requests a second), none of it needed after a
///   crash.
const SQLITE_PRAGMAS: [&str; 5] = [
    // Before anything that creates the file's first page.
    "PRAGMA page_size = 16384",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA cache_size = -32768",
    "PRAGMA temp_store = MEMORY",
];

/// WAL written between automatic checkpoints.
const CHECKPOINT_BYTES: i64 = 32 * 1024 * 1024;

async fn sqlite_settings(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in SQLITE_PRAGMAS {
        sqlx::query(pragma).execute(&mut *conn).await?;
    }
    // SQLite counts the threshold in pages, and a file made before 16 KiB
    // pages keeps its 4 KiB ones.
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    let pages = CHECKPOINT_BYTES / page.max(512);
    sqlx::query(&format!("PRAGMA wal_autocheckpoint = {pages}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Connects to `url` (`postgres://…`, or `sqlite:path`, created if missing).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let max = match backend {
            Backend::Postgres => 8,
            // One writer at a time is all SQLite does; more connections only wait.
            Backend::Sqlite => 1,
        };
        let mut pool = AnyPoolOptions::new().max_connections(max);
        if backend == Backend::Sqlite {
            // Per connection, so on every connection the pool opens (it
            // replaces them after their idle time or lifetime). No ping
            // before each use: the connection is in this process and cannot
            // drop, and a ping is a trip to SQLite's thread like a query.
            pool = pool
                .after_connect(|conn, _| Box::pin(sqlite_settings(conn)))
                .test_before_acquire(false);
        }
        let pool = pool.connect_with(options).await?;
        Ok(Store { pool, backend })
    }

    /// Applies every migration not yet applied, each in its own
    /// transaction; returns the versions applied now.
    ///
    /// Any number of services may start at once against one fresh database:
    /// on PostgreSQL the whole run holds a session-level advisory lock
    /// ([`MIGRATION_LOCK`]) on one connection, so each migration is applied
    /// exactly once and a second service waits, then finds nothing to do.
    /// (Even `CREATE TABLE IF NOT EXISTS` fails when two sessions race it.)
    /// SQLite's single writer serialises the transactions by itself.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        let applied = self.apply(&mut conn).await;
        if self.backend == Backend::Postgres {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                // The lock goes with the session: close it rather than return it to the pool.
                tracing::warn!("releasing the migration lock: {e}");
                conn.detach();
            }
        }
        applied
    }

    /// Waits until no other process holds `key`, then holds it (see
    /// [`Exclusive`]); an error after `wait` (whole milliseconds) without it.
    pub async fn exclusive(&self, key: i64, wait: Duration) -> Result<Exclusive, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(Exclusive(None));
        }
        let mut tx = self.pool.begin().await?;
        // A holder that hangs (its process stopped mid-section, its session
        // not yet dropped) makes the wait an error, not a hang.
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = {}",
            wait.as_millis().max(1)
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(Exclusive(Some(tx)))
    }

    /// How many of this build's migrations the database has not applied
    /// (a readiness check: 0 once `migrate` has run here or elsewhere).
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&self.pool)
            .await
        {
            Ok(applied) => applied,
            Err(sqlx::Error::Database(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(MIGRATIONS
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count())
    }

    /// Migration `version`'s SQL for this store's backend, as
    /// [`Store::migrate`] applies it: for tests that rebuild the schema a
    /// previous build left and migrate it again.
    pub fn migration_sql(&self, version: i64) -> Option<&'static str> {
        MIGRATIONS
            .iter()
            .find(|m| m.version == version)
            .map(|m| m.sql(self.backend))
    }

    async fn apply(&self, conn: &mut sqlx::AnyConnection) -> Result<Vec<i64>, StoreError> {
        use sqlx::Connection;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await?;
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if let Some(found) = found.filter(|&found| found > known) {
            return Err(StoreError::Newer { found, known });
        }
        let mut applied = Vec::new();
        for m in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(m.version)
                    .fetch_optional(&mut *conn)
                    .await?;
            if done.is_some() {
                continue;
            }
            let sql = m.sql(self.backend);
            let failed = |source| StoreError::Migration {
                version: m.version,
                name: m.name,
                source,
            };
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(failed)?;
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                .bind(m.version)
                .bind(m.name)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(version = m.version, name = m.name, "migration applied");
            applied.push(m.version);
        }
        Ok(applied)
    }
}
