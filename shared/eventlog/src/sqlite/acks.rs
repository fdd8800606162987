//! Consumers' acks, kept in memory and written to `log_consumers` together
//! [`FLUSH_EVERY`] after the first one pending: at a few hundred requests
//! a second `up`'s four consumers each acked every batch, and each ack was
//! a transaction of its own (a trip to SQLite's thread and an fsync). Acks
//! only save work: a record acked but not yet written comes again after a
//! crash, and every consumer already takes a record twice (the ledger and
//! the control plane by event id, the exporter by its sightings), as it
//! must on JetStream. So they are written without an fsync (see the log's
//! note on what is fsynced), and an idle log writes nothing and does not
//! wake to check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;

/// How long an ack waits to be written with those that follow it.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Acks not yet written: consumer name → highest record acked.
#[derive(Debug, Default)]
pub(super) struct Acks {
    pending: Mutex<HashMap<String, i64>>,
    /// Woken by an ack, and by the acks' end (so the writer stops).
    arrived: Arc<Notify>,
}

impl Drop for Acks {
    fn drop(&mut self) {
        self.arrived.notify_one();
    }
}

impl Acks {
    /// Notes that `name` acked everything up to `seq`.
    pub(super) fn ack(&self, name: &str, seq: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(name) {
            Some(acked) => *acked = (*acked).max(seq),
            None => {
                pending.insert(name.to_owned(), seq);
            }
        }
        drop(pending);
        self.arrived.notify_one();
    }

    /// `name`'s pending ack. Read it before the written one: a flush writes
    /// an ack before it stops being pending, so the later of the two is
    /// where the consumer resumes.
    pub(super) fn pending(&self, name: &str) -> Option<i64> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.get(name).copied()
    }

    /// Writes the pending acks in one transaction. They stay pending until
    /// written (a consumer opened meanwhile resumes past them), and after a
    /// failure, for the next try.
    pub(super) async fn flush(&self, pool: &SqlitePool) -> sqlx::Result<()> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if pending.is_empty() {
            return Ok(());
        }
        write(pool, &pending).await?;
        let mut left = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        left.retain(|name, seq| pending.get(name).is_none_or(|written| *seq > *written));
        Ok(())
    }
}

async fn write(pool: &SqlitePool, acks: &HashMap<String, i64>) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for (name, seq) in acks {
        sqlx::query("UPDATE log_consumers SET acked = MAX(acked, $1) WHERE name = $2")
            .bind(seq)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Writes `acks`' pending acks [`FLUSH_EVERY`] after one arrives, until
/// the log they belong to is dropped (a clean stop writes the rest with
/// [`crate::EventLog::close`]).
pub(super) async fn keep_flushing(acks: Weak<Acks>, pool: SqlitePool) {
    let Some(arrived) = acks.upgrade().map(|a| Arc::clone(&a.arrived)) else {
        return;
    };
    loop {
        arrived.notified().await;
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            let Some(acks) = acks.upgrade() else {
                return;
            };
            // A failed write stays pending and is tried again.
            if acks.flush(&pool).await.is_ok() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool(with_table: bool) -> SqlitePool {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        if with_table {
            sqlx::raw_sql(
                "CREATE TABLE log_consumers (name TEXT PRIMARY KEY, acked INTEGER NOT NULL);
                 INSERT INTO log_consumers VALUES ('ledger', 0);",
            )
            .execute(&pool)
            .await
            .unwrap();
        }
        pool
    }

    #[tokio::test]
    async fn an_ack_stays_pending_until_it_is_written() {
        let acks = Acks::default();
        acks.ack("ledger", 7);
        acks.ack("ledger", 5);
        assert_eq!(acks.pending("ledger"), Some(7), "acks are cumulative");
        assert!(acks.flush(&pool(false).await).await.is_err());
        assert_eq!(acks.pending("ledger"), Some(7), "kept after a failed write");
        let written = pool(true).await;
        acks.flush(&written).await.unwrap();
        assert_eq!(acks.pending("ledger"), None);
        let acked: i64 = sqlx::query_scalar("SELECT acked FROM log_consumers")
            .fetch_one(&written)
            .await
            .unwrap();
        assert_eq!(acked, 7);
    }

    async fn written(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("SELECT acked FROM log_consumers")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// The writer sleeps until an ack arrives, writes it soon after, and
    /// ends once the acks are gone, idle or not: a writer waiting for an
    /// ack that can never come would outlive every log it served.
    #[tokio::test]
    async fn an_ack_is_written_soon_after_it_arrives_and_the_writer_ends_with_the_acks() {
        let pool = pool(true).await;
        let acks = Arc::new(Acks::default());
        let writer = tokio::spawn(keep_flushing(Arc::downgrade(&acks), pool.clone()));
        for seq in [3, 9] {
            acks.ack("ledger", seq);
            // Written, then no longer pending (the writer clears it after
            // its commit, so a read in between sees both).
            let mut tries = 0;
            while written(&pool).await != seq || acks.pending("ledger").is_some() {
                tries += 1;
                assert!(tries < 300, "ack {seq} not written within 30 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        drop(acks);
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the writer ends once the acks are dropped")
            .unwrap();
    }
}
