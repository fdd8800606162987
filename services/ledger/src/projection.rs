//! The live projection in the store, keyed by event id, so an event
//! delivered or published twice changes the books once.
//!
//! Event-level rows (applied ids, journal lines, requests) are written per
//! event; account-level rows (balances, day totals, origins) are summed over
//! a batch in [`AccountChanges`] and written once per account, which is
//! what makes a batch cheaper than its events one by one.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use events::{AccountId, AccountState, Envelope};
use money::Money;
use sqlx::Row;
use store::Store;

use crate::postings::{effects, Effects};
use crate::recharge::Recharge;
use crate::LedgerError;

fn nanos(m: Money) -> i64 {
    m.nanos()
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One account's summed changes.
#[derive(Debug, Default)]
struct Change {
    delta: Money,
    events: i64,
    name: Option<String>,
    limit: Option<Option<Money>>,
}

/// The account-level changes of a batch of events, summed.
#[derive(Debug, Default)]
pub struct AccountChanges {
    accounts: BTreeMap<String, Change>,
    days: BTreeMap<(String, String), (Money, i64)>,
    origins: BTreeMap<(String, String), u64>,
    /// (account, gateway process) → (events, latest time).
    instances: BTreeMap<(String, String), (i64, String)>,
    /// gateway → (highest number, events, latest time).
    sequences: BTreeMap<String, (u64, i64, String)>,
    /// Auto-recharge states of the accounts touched, as loaded and folded,
    /// and whether they changed.
    recharges: BTreeMap<String, (Recharge, bool)>,
    /// Balances before the batch of the accounts whose auto-recharge is on.
    balances: BTreeMap<String, Money>,
    /// Recharges this batch started: (account, recharge).
    pub started: Vec<(AccountId, uuid::Uuid)>,
    /// Deposits this batch settled: (payment, account, credits, fee, recharge, at).
    deposits: Vec<(String, String, Money, Money, Option<String>, String)>,
}

impl AccountChanges {
    fn add(&mut self, e: &Effects, at: &str) {
        let account = e.account.to_string();
        let change = self.accounts.entry(account.clone()).or_default();
        change.delta += e.balance_delta();
        change.events += 1;
        if e.name.is_some() {
            change.name.clone_from(&e.name);
        }
        if e.limit.is_some() {
            change.limit = e.limit;
        }
        if let Some(spent) = e.spend {
            let day = self
                .days
                .entry((account.clone(), e.day.to_string()))
                .or_default();
            day.0 += spent;
            day.1 += 1;
        }
        if let Some(instance) = &e.instance {
            let count = self
                .instances
                .entry((account.clone(), instance.clone()))
                .or_default();
            count.0 += 1;
            count.1 = count.1.clone().max(at.to_owned());
        }
        if let Some((gateway, seq)) = &e.origin {
            let sequence = self.sequences.entry(gateway.clone()).or_default();
            sequence.0 = sequence.0.max(*seq);
            sequence.1 += 1;
            sequence.2 = sequence.2.clone().max(at.to_owned());
            let last = self.origins.entry((account, gateway.clone())).or_default();
            *last = (*last).max(*seq);
        }
    }

    /// Folds the event into its account's auto-recharge (loaded once per
    /// batch), with the balance after it; notes a recharge it starts.
    async fn recharge(
        &mut self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        envelope: &Envelope,
    ) -> Result<(), LedgerError> {
        let account = envelope.event.account();
        let key = account.to_string();
        if !self.recharges.contains_key(&key) {
            let loaded = crate::recharge::load(&mut **tx, &key).await?;
            self.recharges.insert(key.clone(), (loaded, false));
        }
        let Some((state, _)) = self.recharges.get(&key) else {
            return Ok(());
        };
        if !state.enabled && !Recharge::settles_or_sets(&envelope.event) {
            return Ok(());
        }
        if !self.balances.contains_key(&key) {
            let base: Option<i64> =
                sqlx::query_scalar("SELECT balance FROM balances WHERE account = $1")
                    .bind(&key)
                    .fetch_optional(&mut **tx)
                    .await?;
            self.balances
                .insert(key.clone(), Money::from_nanos(base.unwrap_or(0)));
        }
        let balance =
            self.balances[&key] + self.accounts.get(&key).map_or(Money::ZERO, |c| c.delta);
        if let Some((state, dirty)) = self.recharges.get_mut(&key) {
            let before = state.clone();
            if let Some(started) = state.apply(envelope, balance) {
                self.started.push((account, started));
            }
            *dirty |= *state != before;
        }
        Ok(())
    }

    /// Writes the sums: one statement per account, day and origin touched.
    pub async fn write(self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), LedgerError> {
        for (account, (state, dirty)) in &self.recharges {
            if *dirty {
                crate::recharge::store(&mut **tx, account, state).await?;
            }
        }
        for (payment, account, credits, fee, recharge, at) in &self.deposits {
            sqlx::query(
                "INSERT INTO deposits (payment, account, credits, fee, recharge, at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (payment) DO NOTHING",
            )
            .bind(payment)
            .bind(account)
            .bind(nanos(*credits))
            .bind(nanos(*fee))
            .bind(recharge)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        for (account, change) in &self.accounts {
            write_account(tx, account, change).await?;
        }
        for ((account, day), (spent, requests)) in &self.days {
            sqlx::query(
                "INSERT INTO day_spend (account, day, spent, requests) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account, day) DO UPDATE SET spent = day_spend.spent + $3, requests = day_spend.requests + $4",
            )
            .bind(account)
            .bind(day)
            .bind(nanos(*spent))
            .bind(*requests)
            .execute(&mut **tx)
            .await?;
        }
        for ((account, instance), (events, at)) in &self.instances {
            sqlx::query(
                "INSERT INTO origin_instances (account, instance, events, last_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account, instance) DO UPDATE SET events = origin_instances.events + $3,
                     last_at = CASE WHEN origin_instances.last_at > $4 THEN origin_instances.last_at ELSE $4 END",
            )
            .bind(account)
            .bind(instance)
            .bind(*events)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        for (gateway, (max, events, at)) in &self.sequences {
            sqlx::query(
                "INSERT INTO gateway_sequences (gateway, max_seq, events, last_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (gateway) DO UPDATE SET
                     max_seq = CASE WHEN gateway_sequences.max_seq > $2 THEN gateway_sequences.max_seq ELSE $2 END,
                     events = gateway_sequences.events + $3,
                     last_at = CASE WHEN gateway_sequences.last_at > $4 THEN gateway_sequences.last_at ELSE $4 END",
            )
            .bind(gateway)
            .bind(as_i64(*max))
            .bind(*events)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        for ((account, gateway), seq) in &self.origins {
            sqlx::query(
                "INSERT INTO origins (account, gateway, seq) VALUES ($1, $2, $3)
                 ON CONFLICT (account, gateway) DO UPDATE SET seq = CASE WHEN origins.seq > $3 THEN origins.seq ELSE $3 END",
            )
            .bind(account)
            .bind(gateway)
            .bind(as_i64(*seq))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Applies the event's own rows within `tx` and adds its account-level
/// changes to `changes` (the caller writes them and commits); `false` if it
/// was applied before, in which case nothing was written or added.
pub async fn apply_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    seq: u64,
    envelope: &Envelope,
    changes: &mut AccountChanges,
) -> Result<bool, LedgerError> {
    let Some(e) = effects(envelope) else {
        return Ok(false);
    };
    let (kind, _) = envelope.event.kind();
    let id = envelope.id.to_string();
    let account = e.account.to_string();
    let at = envelope.at.to_rfc3339();
    let fresh = sqlx::query(
        "INSERT INTO applied_events (event_id, seq, kind, account, at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&id)
    .bind(as_i64(seq))
    .bind(kind)
    .bind(&account)
    .bind(&at)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        return Ok(false);
    }
    for (n, line) in e.lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO journal (event_id, line, at, book, account, debit, credit, memo)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(n as i32)
        .bind(&at)
        .bind(line.book.as_str())
        .bind(line.account.to_string())
        .bind(nanos(line.debit))
        .bind(nanos(line.credit))
        .bind(&line.memo)
        .execute(&mut **tx)
        .await?;
    }
    changes.add(&e, &at);
    if let events::Event::DepositSettled(d) = &envelope.event {
        changes.deposits.push((
            d.payment.clone(),
            account.clone(),
            d.credits,
            d.fee,
            d.recharge.map(|r| r.to_string()),
            at.clone(),
        ));
    }
    changes.recharge(tx, envelope).await?;
    if let Some(r) = &e.request {
        let (gateway, origin_seq) = e.origin.clone().unwrap_or_default();
        sqlx::query(
            "INSERT INTO requests (event_id, account, at, request_id, model, provider,
                                   input_tokens, output_tokens, cost, total_ms, outcome, key_id,
                                   gateway, origin_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&id)
        .bind(&account)
        .bind(&at)
        .bind(&r.request_id)
        .bind(&r.model)
        .bind(&r.provider)
        .bind(as_i64(r.input_tokens))
        .bind(as_i64(r.output_tokens))
        .bind(nanos(r.cost))
        .bind(as_i64(r.total_ms))
        .bind(r.outcome)
        .bind(&r.key)
        .bind(gateway)
        .bind(as_i64(origin_seq))
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

async fn write_account(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &str,
    change: &Change,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO balances (account, name, balance, daily_limit, version) VALUES ($1, '', $2, NULL, $3)
         ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2, version = balances.version + $3",
    )
    .bind(account)
    .bind(nanos(change.delta))
    .bind(change.events)
    .execute(&mut **tx)
    .await?;
    if let Some(name) = &change.name {
        sqlx::query("UPDATE balances SET name = $1 WHERE account = $2")
            .bind(name)
            .bind(account)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(limit) = change.limit {
        sqlx::query("UPDATE balances SET daily_limit = $1 WHERE account = $2")
            .bind(limit.map(nanos))
            .bind(account)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The account's state for the gateways, with `today`'s spend.
pub async fn state(
    store: &Store,
    account: AccountId,
    today: NaiveDate,
) -> Result<Option<AccountState>, LedgerError> {
    let key = account.to_string();
    let Some(row) =
        sqlx::query("SELECT balance, daily_limit, version FROM balances WHERE account = $1")
            .bind(&key)
            .fetch_optional(&store.pool)
            .await?
    else {
        return Ok(None);
    };
    let spent: Option<i64> =
        sqlx::query_scalar("SELECT spent FROM day_spend WHERE account = $1 AND day = $2")
            .bind(&key)
            .bind(today.to_string())
            .fetch_optional(&store.pool)
            .await?;
    let origins = sqlx::query("SELECT gateway, seq FROM origins WHERE account = $1")
        .bind(&key)
        .fetch_all(&store.pool)
        .await?;
    let mut applied = BTreeMap::new();
    for row in origins {
        let seq: i64 = row.try_get("seq")?;
        applied.insert(row.try_get("gateway")?, u64::try_from(seq).unwrap_or(0));
    }
    let recent = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let instances = sqlx::query(
        "SELECT instance, events FROM origin_instances WHERE account = $1 AND last_at > $2",
    )
    .bind(&key)
    .bind(&recent)
    .fetch_all(&store.pool)
    .await?;
    let mut applied_events = BTreeMap::new();
    for row in instances {
        let events: i64 = row.try_get("events")?;
        applied_events.insert(row.try_get("instance")?, u64::try_from(events).unwrap_or(0));
    }
    let limit: Option<i64> = row.try_get("daily_limit")?;
    let version: i64 = row.try_get("version")?;
    Ok(Some(AccountState {
        account,
        balance: Money::from_nanos(row.try_get("balance")?),
        day: today,
        spent_today: Money::from_nanos(spent.unwrap_or(0)),
        daily_limit: limit.map(Money::from_nanos),
        version: u64::try_from(version).unwrap_or(0),
        applied,
        applied_events,
    }))
}

/// Records an event this build cannot read, so it is never skipped silently.
pub async fn reject(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    seq: u64,
    error: &str,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO rejected_events (seq, error) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING",
    )
    .bind(as_i64(seq))
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
