//! Consumers' acks, kept in memory and written to `log_consumers` together
//! every [`FLUSH_EVERY`]: at a few hundred requests a second `up`'s four
//! consumers each acked every batch, and each ack was a transaction of its
//! own (a trip to SQLite's thread and an fsync). Acks only save work: a
//! record acked but not yet written comes again after a crash, and every
//! consumer already takes a record twice (the ledger and the control plane
//! by event id, the exporter by its sightings), as it must on JetStream.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use sqlx::SqlitePool;

/// How often pending acks are written.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Acks not yet written: consumer name → highest record acked.
#[derive(Debug, Default)]
pub(super) struct Acks {
    pending: Mutex<HashMap<String, i64>>,
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
    }

    /// Where `name` resumes: the later of its written ack and a pending one.
    pub(super) fn resume(&self, name: &str, written: i64) -> i64 {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.get(name).map_or(written, |&seq| seq.max(written))
    }

    /// Writes the pending acks in one transaction; on failure they stay
    /// pending for the next try.
    pub(super) async fn flush(&self, pool: &SqlitePool) -> sqlx::Result<()> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let written = write(pool, &taken).await;
        if written.is_err() {
            for (name, seq) in &taken {
                self.ack(name, *seq);
            }
        }
        written
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

/// Writes `acks`' pending acks every [`FLUSH_EVERY`] until the log they
/// belong to is dropped (a clean stop writes the rest with
/// [`crate::EventLog::close`]).
pub(super) async fn keep_flushing(acks: Weak<Acks>, pool: SqlitePool) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(acks) = acks.upgrade() else {
            return;
        };
        // A failed write stays pending; the next tick tries again.
        let _ = acks.flush(&pool).await;
    }
}
