//! Reconciliation: replay the whole log into a scratch [`Projection`] and
//! compare every balance, day total and journal line with the live store.

use std::collections::BTreeMap;
use std::fmt::Debug;

use eventlog::EventLog;
use events::Envelope;
use money::Money;
use sqlx::Row;
use store::Store;

use crate::memory::{Account, Projection};
use crate::LedgerError;

/// Records read from the log per batch.
const BATCH: usize = 1_000;

/// Replays every event from the start of `log`.
pub async fn replay(log: &dyn EventLog) -> Result<(Projection, Vec<String>), LedgerError> {
    let mut projection = Projection::default();
    let mut unreadable = Vec::new();
    let mut from = 1;
    loop {
        let records = log.read(from, BATCH).await?;
        let Some(last) = records.last() else { break };
        from = last.seq + 1;
        for record in &records {
            for decoded in Envelope::decode_all(&record.payload) {
                match decoded {
                    Ok(envelope) => projection.apply(&envelope),
                    Err(e) => unreadable.push(format!("log record {}: {e}", record.seq)),
                }
            }
        }
    }
    Ok((projection, unreadable))
}

/// The store's tables, read into the same shape.
pub async fn load(store: &Store) -> Result<Projection, LedgerError> {
    let mut p = Projection::default();
    for row in sqlx::query("SELECT event_id FROM applied_events")
        .fetch_all(&store.pool)
        .await?
    {
        p.applied.insert(row.try_get("event_id")?);
    }
    for row in sqlx::query("SELECT account, name, balance, daily_limit, version FROM balances")
        .fetch_all(&store.pool)
        .await?
    {
        let limit: Option<i64> = row.try_get("daily_limit")?;
        let version: i64 = row.try_get("version")?;
        p.accounts.insert(
            row.try_get("account")?,
            Account {
                name: row.try_get("name")?,
                balance: Money::from_nanos(row.try_get("balance")?),
                daily_limit: limit.map(Money::from_nanos),
                version: u64::try_from(version).unwrap_or(0),
            },
        );
    }
    for row in sqlx::query("SELECT account, day, spent, requests FROM day_spend")
        .fetch_all(&store.pool)
        .await?
    {
        let requests: i64 = row.try_get("requests")?;
        p.days.insert(
            (row.try_get("account")?, row.try_get("day")?),
            (
                Money::from_nanos(row.try_get("spent")?),
                u64::try_from(requests).unwrap_or(0),
            ),
        );
    }
    for row in sqlx::query("SELECT event_id, line, book, account, debit, credit FROM journal")
        .fetch_all(&store.pool)
        .await?
    {
        p.journal.insert(
            (row.try_get("event_id")?, row.try_get("line")?),
            (
                row.try_get("book")?,
                row.try_get("account")?,
                Money::from_nanos(row.try_get("debit")?),
                Money::from_nanos(row.try_get("credit")?),
            ),
        );
    }
    Ok(p)
}

/// Every difference between what the log implies and what the store holds.
pub async fn reconcile(log: &dyn EventLog, store: &Store) -> Result<Vec<String>, LedgerError> {
    let (expected, mut differences) = replay(log).await?;
    let live = load(store).await?;
    compare(
        "event applied",
        &expected.applied.iter().map(|i| (i.clone(), ())).collect(),
        &live.applied.iter().map(|i| (i.clone(), ())).collect(),
        &mut differences,
    );
    compare(
        "account",
        &expected.accounts,
        &live.accounts,
        &mut differences,
    );
    compare("day total", &expected.days, &live.days, &mut differences);
    compare(
        "journal line",
        &expected.journal,
        &live.journal,
        &mut differences,
    );
    Ok(differences)
}

fn compare<K: Ord + Debug, V: PartialEq + Debug>(
    what: &str,
    expected: &BTreeMap<K, V>,
    live: &BTreeMap<K, V>,
    out: &mut Vec<String>,
) {
    for (key, want) in expected {
        match live.get(key) {
            None => out.push(format!(
                "{what} {key:?}: missing from the store (log says {want:?})"
            )),
            Some(have) if have != want => out.push(format!(
                "{what} {key:?}: store has {have:?}, log says {want:?}"
            )),
            Some(_) => {}
        }
    }
    for (key, have) in live {
        if !expected.contains_key(key) {
            out.push(format!(
                "{what} {key:?}: in the store ({have:?}) but not in the log"
            ));
        }
    }
}
