//! The ledger's running check for lost usage (see [`crate::gaps`] for the
//! reasoning): every minute it notes each gateway's highest applied number;
//! once a noted number is older than the grace, every number up to it
//! belongs to a request that has ended, so the check walks the numbers
//! applied since the last verified one and counts the absent ones. The
//! result goes to `gateway_sequences` (`verified_seq`, `missing`,
//! `checked_at`) for the operator's view, and a warning to the log.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use sqlx::Row;
use store::Store;

use crate::LedgerError;

/// How often the check runs.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Each gateway's highest applied number at one moment.
type Note = (DateTime<Utc>, Vec<(String, u64)>);

/// Highest numbers noted per gateway, oldest note first.
#[derive(Default)]
pub struct Check {
    notes: VecDeque<Note>,
}

/// What one gateway's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub gateway: String,
    /// Every number up to this has its event.
    pub verified: u64,
    /// Numbers between `verified` and the settled one without an event.
    pub missing: u64,
}

impl Check {
    /// Notes the current highest numbers, then checks the gateways whose
    /// note is older than `grace`; returns what it found for them.
    pub async fn run(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> Result<Vec<Finding>, LedgerError> {
        let mut current = Vec::new();
        for row in sqlx::query("SELECT gateway, max_seq FROM gateway_sequences")
            .fetch_all(&store.pool)
            .await?
        {
            let max: i64 = row.try_get("max_seq")?;
            current.push((row.try_get("gateway")?, u64::try_from(max).unwrap_or(0)));
        }
        self.notes.push_back((now, current));
        let mut settled = None;
        while self.notes.front().is_some_and(|(at, _)| now - *at >= grace) {
            settled = self.notes.pop_front();
        }
        let Some((_, settled)) = settled else {
            return Ok(Vec::new());
        };
        let mut findings = Vec::new();
        for (gateway, upto) in settled {
            findings.push(verify(store, &gateway, upto, now).await?);
        }
        Ok(findings)
    }
}

/// Walks `gateway`'s numbers above its verified one up to `upto`.
async fn verify(
    store: &Store,
    gateway: &str,
    upto: u64,
    now: DateTime<Utc>,
) -> Result<Finding, LedgerError> {
    let verified: i64 =
        sqlx::query_scalar("SELECT verified_seq FROM gateway_sequences WHERE gateway = $1")
            .bind(gateway)
            .fetch_one(&store.pool)
            .await?;
    let verified = u64::try_from(verified).unwrap_or(0);
    let seen: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT origin_seq FROM requests WHERE gateway = $1 AND origin_seq > $2 AND origin_seq <= $3
         ORDER BY origin_seq",
    )
    .bind(gateway)
    .bind(i64::try_from(verified).unwrap_or(i64::MAX))
    .bind(i64::try_from(upto).unwrap_or(i64::MAX))
    .fetch_all(&store.pool)
    .await?;
    let (mut contiguous, mut missing, mut expected) = (verified, 0, verified + 1);
    for seq in seen.into_iter().filter_map(|s| u64::try_from(s).ok()) {
        missing += seq - expected;
        if missing == 0 {
            contiguous = seq;
        }
        expected = seq + 1;
    }
    missing += (upto + 1).saturating_sub(expected);
    sqlx::query(
        "UPDATE gateway_sequences SET verified_seq = $1, missing = $2, checked_at = $3 WHERE gateway = $4",
    )
    .bind(i64::try_from(contiguous).unwrap_or(i64::MAX))
    .bind(i64::try_from(missing).unwrap_or(i64::MAX))
    .bind(now.to_rfc3339())
    .bind(gateway)
    .execute(&store.pool)
    .await?;
    if missing > 0 {
        tracing::warn!(
            gateway,
            missing,
            after = contiguous,
            "usage events lost: numbers taken by requests that have ended never reached the ledger (see `modelrouter reconcile`)"
        );
    }
    Ok(Finding {
        gateway: gateway.to_owned(),
        verified: contiguous,
        missing,
    })
}
