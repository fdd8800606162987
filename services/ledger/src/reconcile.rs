//! Reconciliation: replay the whole log into a scratch [`Projection`] and
//! compare every applied event, balance, day total, journal line and usage
//! origin count with the live store; and look for usage that never reached
//! the log: gaps in the gateways' sequences (see [`crate::gaps`]) and
//! gateways whose journal still holds events the log has not taken.
//!
//! The ledger may be folding while this runs, so the store is compared
//! with the events the ledger has folded, not with the whole log: every
//! event through the ledger's ack position (read first: the ledger acks
//! only what it has committed), and any later one the store has claimed
//! (read next, in one snapshot of the store). Later events the store has
//! not claimed are not folded yet, which is not a difference; an event at
//! or before the ack position that the store lacks is one, and so is
//! every row no event in the log explains.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug};

use chrono::{DateTime, Utc};
use eventlog::EventLog;
use events::{Envelope, GatewayStatus, GATEWAYS_BUCKET};
use money::Money;
use sqlx::Row;
use store::Store;

use crate::gaps::{self, Gap, SeqRanges};
use crate::memory::{Account, Projection};
use crate::LedgerError;

/// How long a request may run before its number, if still without an event,
/// counts as lost: the gateway's default total deadline (300 s) plus a
/// minute for the event to travel.
pub const DEFAULT_GRACE: chrono::Duration = chrono::Duration::minutes(6);
/// A gateway that has not reported for this long has stopped.
const STOPPED_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// What reconciliation found.
#[derive(Debug, Default)]
pub struct Audit {
    /// The last log record replayed.
    pub through: u64,
    /// The ledger's ack position when the audit began: the store must hold
    /// every event through it.
    pub folded_through: u64,
    /// Events after that position the store had not folded yet (not a
    /// difference: the ledger folds them in order).
    pub unfolded: u64,
    /// Every difference between the books the log implies and the store.
    pub differences: Vec<String>,
    /// Per gateway, numbers without an event whose requests must have ended.
    pub lost: BTreeMap<String, Vec<Gap>>,
    /// Per gateway, numbers without an event whose requests may still run.
    pub in_flight: BTreeMap<String, Vec<Gap>>,
    /// Gateways whose journal held events the log had not taken when they
    /// last reported, and whether they have stopped since.
    pub journals: Vec<(GatewayStatus, bool)>,
    /// The books the log implies (to match against Stripe).
    pub books: Projection,
}

impl Audit {
    /// Nothing differs, nothing is lost and no stopped gateway holds usage.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
            && self.lost.is_empty()
            && !self.journals.iter().any(|(_, stopped)| *stopped)
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for difference in &self.differences {
            writeln!(f, "{difference}")?;
        }
        if self.unfolded > 0 {
            writeln!(
                f,
                "the ledger had acked through record {} of {}; {} later events were not in the books yet (compared once folded: run reconcile again)",
                self.folded_through, self.through, self.unfolded
            )?;
        }
        for (gateway, gaps) in &self.lost {
            let missing: u64 = gaps.iter().map(Gap::len).sum();
            writeln!(
                f,
                "gateway {gateway}: {missing} usage events lost (numbered, never in the log): {}",
                gaps::describe(gaps)
            )?;
        }
        for (gateway, gaps) in &self.in_flight {
            let missing: u64 = gaps.iter().map(Gap::len).sum();
            writeln!(
                f,
                "gateway {gateway}: {missing} usage events not in the log yet, their requests may still run: {}",
                gaps::describe(gaps)
            )?;
        }
        for (status, stopped) in &self.journals {
            let state = if *stopped {
                "stopped with"
            } else {
                "running, with"
            };
            writeln!(
                f,
                "gateway {}: {state} {} usage events ({} bytes) in its journal not yet in the log (data dir {}, reported {})",
                status.gateway,
                status.journal_events,
                status.journal_bytes,
                status.data_dir,
                status.seen_at.to_rfc3339()
            )?;
            if *stopped {
                writeln!(
                    f,
                    "  start a gateway on that data dir to send them (any gateway started there takes the journal over)"
                )?;
            }
        }
        Ok(())
    }
}

/// Replays the log and compares (see [`Audit`]); `grace` is how long a
/// request may run (see [`DEFAULT_GRACE`]).
pub async fn audit(
    log: &dyn EventLog,
    store: &Store,
    grace: chrono::Duration,
) -> Result<Audit, LedgerError> {
    let (mut replayed, differences) = compare_with_log(log, store).await?;
    let now = Utc::now();
    let sequences = std::mem::take(&mut replayed.sequences);
    let mut audit = Audit {
        through: replayed.through,
        folded_through: replayed.folded_through,
        unfolded: replayed.unfolded,
        differences,
        books: replayed.into_books(),
        ..Audit::default()
    };
    for (gateway, seen) in &sequences {
        let (lost, in_flight): (Vec<Gap>, Vec<Gap>) =
            seen.gaps().into_iter().partition(|g| g.settled(now, grace));
        if !lost.is_empty() {
            audit.lost.insert(gateway.clone(), lost);
        }
        if !in_flight.is_empty() {
            audit.in_flight.insert(gateway.clone(), in_flight);
        }
    }
    audit.journals = journals(log, now).await?;
    Ok(audit)
}

/// Every difference between what the log implies and what the store holds.
pub async fn reconcile(log: &dyn EventLog, store: &Store) -> Result<Vec<String>, LedgerError> {
    Ok(compare_with_log(log, store).await?.1)
}

/// Replays the log against the store's snapshot; the replay and every
/// difference between the folded events' books and the store. The order
/// of the three reads is what makes this right while the ledger runs.
async fn compare_with_log(
    log: &dyn EventLog,
    store: &Store,
) -> Result<(Replay, Vec<String>), LedgerError> {
    let acked = log.acked(crate::service::CONSUMER).await?;
    let live = load(store).await?;
    let mut replayed = replay(log, acked, &live.applied).await?;
    let mut differences = std::mem::take(&mut replayed.unreadable);
    compare_books(&replayed.folded, &live, &mut differences);
    Ok((replayed, differences))
}

/// Gateways reporting usage in their journal that the log has not taken.
async fn journals(
    log: &dyn EventLog,
    now: DateTime<Utc>,
) -> Result<Vec<(GatewayStatus, bool)>, LedgerError> {
    let mut found = Vec::new();
    for entry in log.bucket(GATEWAYS_BUCKET).await?.snapshot().await? {
        let Ok(status) = serde_json::from_slice::<GatewayStatus>(&entry.value) else {
            continue;
        };
        if status.journal_events > 0 || status.set_aside > 0 || status.lost > 0 {
            let stopped = now - status.seen_at > STOPPED_AFTER;
            found.push((status, stopped));
        }
    }
    Ok(found)
}

/// Records read from the log per batch.
const BATCH: usize = 1_000;

/// What a replay of the whole log found.
#[derive(Debug, Default)]
pub struct Replay {
    /// The last record read.
    pub through: u64,
    /// The books of the events the ledger has folded (see the module's
    /// doc): what the store must hold.
    pub folded: Projection,
    /// The books of the events it has not folded yet (few: the ledger's
    /// lag), kept apart so a replay holds the log's books once.
    pub pending: Projection,
    /// Position of the ledger's ack the fold was judged by.
    pub folded_through: u64,
    /// Events after it that the store had not claimed.
    pub unfolded: u64,
    /// Per gateway, the numbers of its sequence found in the log.
    pub sequences: BTreeMap<String, SeqRanges>,
    /// The records this build could not read.
    pub unreadable: Vec<String>,
}

/// Replays every event from the start of `log`: an event counts as folded
/// when its record is at or before `acked`, or when `claimed` (the store's
/// applied ids) holds it.
pub async fn replay(
    log: &dyn EventLog,
    acked: u64,
    claimed: &BTreeSet<String>,
) -> Result<Replay, LedgerError> {
    let mut replay = Replay {
        folded_through: acked,
        ..Replay::default()
    };
    let mut from = 1;
    loop {
        let records = log.read(from, BATCH).await?;
        let Some(last) = records.last() else { break };
        from = last.seq + 1;
        replay.through = last.seq;
        for record in &records {
            for decoded in Envelope::decode_all(&record.payload) {
                match decoded {
                    Ok(envelope) => replay.apply(record.seq, &envelope, claimed),
                    Err(e) => replay
                        .unreadable
                        .push(format!("log record {}: {e}", record.seq)),
                }
            }
        }
    }
    Ok(replay)
}

impl Replay {
    /// Applies `envelope` to the folded books or to those not folded yet,
    /// once whichever it falls in (the log may hold an event twice).
    fn apply(&mut self, seq: u64, envelope: &Envelope, claimed: &BTreeSet<String>) {
        let id = envelope.id.to_string();
        let effects = if seq <= self.folded_through || claimed.contains(&id) {
            self.folded.apply(envelope)
        } else if self.folded.applied.contains(&id) {
            None
        } else {
            let effects = self.pending.apply(envelope);
            self.unfolded += u64::from(effects.is_some());
            effects
        };
        if let Some((gateway, number)) = effects.and_then(|e| e.origin) {
            self.sequences
                .entry(gateway)
                .or_default()
                .insert(number, envelope.at);
        }
    }

    /// The books the whole log implies, as far as Stripe is matched
    /// against them: the folded books with the deposits and paybacks of
    /// events not folded yet added.
    fn into_books(self) -> Projection {
        let mut books = self.folded;
        for (payment, deposit) in self.pending.deposits {
            books.deposits.entry(payment).or_insert(deposit);
        }
        for (payment, returned) in self.pending.returned {
            *books.returned.entry(payment).or_default() += returned;
        }
        books
    }
}

/// The store's tables, read into the same shape, in one snapshot (the
/// ledger commits a batch's rows in all of them at once).
pub async fn load(store: &Store) -> Result<Projection, LedgerError> {
    let mut tx = store.pool.begin().await?;
    if store.backend == store::Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let loaded = load_in(&mut tx).await;
    tx.rollback().await?;
    loaded
}

async fn load_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<Projection, LedgerError> {
    let mut p = Projection::default();
    for row in
        sqlx::query("SELECT event_id FROM applied_events UNION ALL SELECT event_id FROM requests")
            .fetch_all(&mut **tx)
            .await?
    {
        p.applied.insert(row.try_get("event_id")?);
    }
    for row in sqlx::query("SELECT account, name, balance, daily_limit, version FROM balances")
        .fetch_all(&mut **tx)
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
        .fetch_all(&mut **tx)
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
        .fetch_all(&mut **tx)
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
    for row in sqlx::query("SELECT account, instance, events FROM origin_instances")
        .fetch_all(&mut **tx)
        .await?
    {
        let events: i64 = row.try_get("events")?;
        p.instances.insert(
            (row.try_get("account")?, row.try_get("instance")?),
            u64::try_from(events).unwrap_or(0),
        );
    }
    let accounts: Vec<String> = sqlx::query_scalar("SELECT account FROM auto_recharge")
        .fetch_all(&mut **tx)
        .await?;
    for (account, state) in crate::recharge::load_all(tx, &accounts).await? {
        if !state.is_default() {
            p.recharges.insert(account, state);
        }
    }
    for row in sqlx::query("SELECT payment, account, credits, fee, recharge FROM deposits")
        .fetch_all(&mut **tx)
        .await?
    {
        p.deposits.insert(
            row.try_get("payment")?,
            (
                row.try_get("account")?,
                Money::from_nanos(row.try_get("credits")?),
                Money::from_nanos(row.try_get("fee")?),
                row.try_get("recharge")?,
            ),
        );
    }
    for row in sqlx::query("SELECT gateway, max_seq, events FROM gateway_sequences")
        .fetch_all(&mut **tx)
        .await?
    {
        let max: i64 = row.try_get("max_seq")?;
        let events: i64 = row.try_get("events")?;
        p.sequences.insert(
            row.try_get("gateway")?,
            (
                u64::try_from(max).unwrap_or(0),
                u64::try_from(events).unwrap_or(0),
            ),
        );
    }
    Ok(p)
}

fn compare_books(expected: &Projection, live: &Projection, differences: &mut Vec<String>) {
    compare(
        "event applied",
        &expected.applied.iter().map(|i| (i.clone(), ())).collect(),
        &live.applied.iter().map(|i| (i.clone(), ())).collect(),
        differences,
    );
    compare("account", &expected.accounts, &live.accounts, differences);
    compare("day total", &expected.days, &live.days, differences);
    compare(
        "journal line",
        &expected.journal,
        &live.journal,
        differences,
    );
    compare(
        "gateway process usage count",
        &expected.instances,
        &live.instances,
        differences,
    );
    compare(
        "gateway sequence (highest, events)",
        &expected.sequences,
        &live.sequences,
        differences,
    );
    compare(
        "auto-recharge",
        &expected.recharges,
        &live.recharges,
        differences,
    );
    compare("deposit", &expected.deposits, &live.deposits, differences);
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

#[cfg(test)]
mod tests {
    use events::{AccountId, DepositSettled, Event};

    use super::*;

    fn deposit(payment: &str) -> Envelope {
        Envelope::new(Event::DepositSettled(DepositSettled {
            account: AccountId::new(),
            credits: Money::from_nanos(10),
            fee: Money::from_nanos(1),
            payment: payment.into(),
            recharge: None,
        }))
    }

    /// Events after the ack position the store has not claimed stay out of
    /// the folded books, count once however often the log holds them, and
    /// are still matched against Stripe.
    #[test]
    fn events_not_folded_yet_are_kept_apart_once_and_still_matched_with_stripe() {
        let (first, claimed_later, pending) = (deposit("pi_1"), deposit("pi_2"), deposit("pi_3"));
        let claimed = BTreeSet::from([claimed_later.id.to_string()]);
        let mut replay = Replay {
            folded_through: 1,
            ..Replay::default()
        };
        replay.apply(1, &first, &claimed);
        replay.apply(2, &claimed_later, &claimed);
        replay.apply(3, &pending, &claimed);
        replay.apply(4, &pending, &claimed);
        replay.apply(5, &first, &claimed);
        assert_eq!(replay.unfolded, 1);
        let folded: Vec<&String> = replay.folded.deposits.keys().collect();
        assert_eq!(folded, ["pi_1", "pi_2"]);
        let books = replay.into_books();
        let all: Vec<&String> = books.deposits.keys().collect();
        assert_eq!(all, ["pi_1", "pi_2", "pi_3"]);
    }
}
