//! The live projection in the store, keyed by event id, so an event
//! delivered or published twice changes the books once.
//!
//! A batch is folded with set-based SQL, one multi-row statement per table
//! whatever its size (see [`store::rows`]):
//! 1. claim the events' ids: a usage event's request row is its claim,
//!    any other event's is a row in `applied_events`. Nearly every batch is
//!    new, so the claim first asks for nothing back: it writes every id or
//!    the batch is folded again, with a claim whose `RETURNING` names the
//!    ones never applied before ([`Claim`]); only those go on;
//! 2. insert their own rows: journal lines (not usage's: its two lines
//!    are its request row, read as lines by the `journal` view), tags,
//!    deposits;
//! 3. load the touched accounts' auto-recharge states and balances (one
//!    query each), fold the events into them in log order, and sum the
//!    account-level changes (balances, day totals, origins);
//! 4. upsert the sums.
//!
//! So a batch of 256 usage events costs about ten statements instead of a
//! thousand, within the caller's one transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use events::{AccountId, AccountState, Envelope};
use money::Money;
use sqlx::Row;
use store::rows::{fetch_in, Rows, Value};
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

/// An event of the batch that the ledger applies, with what it does.
struct Candidate<'a> {
    seq: u64,
    envelope: &'a Envelope,
    id: String,
    account: String,
    at: String,
    effects: Effects,
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Events applied now (the rest were applied before, or are not the
    /// ledger's).
    pub fresh: usize,
    /// Recharges the batch started: (account, recharge).
    pub started: Vec<(AccountId, uuid::Uuid)>,
}

/// How a batch claims its events' ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// All of them, or nothing is applied: a plain `INSERT` that sends no
    /// row back (on SQLite each row back is a thread switch) and that an id
    /// applied before fails, leaving the transaction to be rolled back. An
    /// `ON CONFLICT` clause would cost every row a speculative insertion
    /// (about a quarter of a request row's insert on PostgreSQL) to spare
    /// the rare batch that comes again.
    AllNew,
    /// Those not applied before, named by the statement's `RETURNING`: for
    /// a batch that [`Claim::AllNew`] refused (a redelivery, a replay).
    New,
}

/// Applies `events` (each with its log position, in log order) within
/// `tx`: every event not applied before, once; the caller commits. With
/// [`Claim::AllNew`], `None` when some event was applied before: the
/// caller rolls `tx` back and applies the batch again with [`Claim::New`].
pub async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[(u64, Envelope)],
    claim: Claim,
) -> Result<Option<Applied>, LedgerError> {
    let candidates = candidates(events);
    let fresh: Vec<&Candidate> = match claim {
        Claim::AllNew => {
            for rows in claims(&candidates, claim) {
                match rows.execute(tx).await {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
            candidates.iter().collect()
        }
        Claim::New => {
            let mut fresh = HashSet::with_capacity(candidates.len());
            for rows in claims(&candidates, claim) {
                for row in rows.run(tx).await? {
                    fresh.insert(row.try_get::<String, _>("event_id")?);
                }
            }
            candidates
                .iter()
                .filter(|c| fresh.contains(&c.id))
                .collect()
        }
    };
    insert_event_rows(tx, &fresh).await?;
    let mut changes = AccountChanges::load(tx, &fresh).await?;
    for candidate in &fresh {
        changes.add(candidate);
    }
    let started = std::mem::take(&mut changes.started);
    changes.write(tx).await?;
    Ok(Some(Applied {
        fresh: fresh.len(),
        started,
    }))
}

/// The events the ledger applies, each id once (a publisher's retry may put
/// the same event twice in one batch).
fn candidates(events: &[(u64, Envelope)]) -> Vec<Candidate<'_>> {
    let mut seen = HashSet::new();
    events
        .iter()
        .filter(|(_, envelope)| seen.insert(envelope.id))
        .filter_map(|(seq, envelope)| {
            let effects = effects(envelope)?;
            Some(Candidate {
                seq: *seq,
                envelope,
                id: envelope.id.to_string(),
                account: effects.account.to_string(),
                at: events::time::to_rfc3339(&envelope.at),
                effects,
            })
        })
        .collect()
}

/// The claims of the candidates' ids, each written unless applied before
/// ([`Claim::New`] names the ones written). A usage event's claim is its
/// request row, keyed by the event's id: a row and an index entry fewer
/// per request than a row of its own. Every other event has one in
/// `applied_events`. So a request row must never be deleted (say, to keep
/// the request log short): its journal lines would go with it, and the
/// same event replayed would then count again.
fn claims(candidates: &[Candidate<'_>], claim: Claim) -> [Rows; 2] {
    let tail = match claim {
        Claim::AllNew => "",
        Claim::New => "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    };
    let mut others = Rows::new(
        "INSERT INTO applied_events (event_id, seq, kind, account, at)",
        5,
        tail,
    );
    let mut requests = Rows::new(
        "INSERT INTO requests (event_id, account, at, request_id, model, provider,
                               input_tokens, output_tokens, cost, total_ms, outcome, key_id,
                               gateway, origin_seq, kind, tier, auto_score, attempts,
                               first_byte_ms, end_user, tags, seq)",
        22,
        tail,
    );
    for c in candidates {
        let Some(r) = &c.effects.request else {
            others.push([
                c.id.as_str().into(),
                as_i64(c.seq).into(),
                c.envelope.event.kind().0.into(),
                c.account.as_str().into(),
                c.at.as_str().into(),
            ]);
            continue;
        };
        let (gateway, origin_seq) = c.effects.origin.clone().unwrap_or_default();
        requests.push([
            c.id.as_str().into(),
            c.account.as_str().into(),
            c.at.as_str().into(),
            r.request_id.as_str().into(),
            r.model.as_str().into(),
            r.provider.as_str().into(),
            as_i64(r.input_tokens).into(),
            as_i64(r.output_tokens).into(),
            nanos(r.cost).into(),
            as_i64(r.total_ms).into(),
            r.outcome.into(),
            r.key.as_str().into(),
            gateway.into(),
            as_i64(origin_seq).into(),
            r.kind.into(),
            r.tier.as_str().into(),
            r.auto_score.map(i64::from).into(),
            i64::from(r.attempts).into(),
            r.first_byte_ms.map(as_i64).into(),
            r.user.as_str().into(),
            r.tags.join("\n").into(),
            as_i64(c.seq).into(),
        ]);
    }
    [others, requests]
}

/// The fresh events' own rows besides their claims: journal lines, tags,
/// deposits. A usage event's lines are not written: the `journal` view
/// reads them from its request row (migration 0017), the same lines
/// [`effects`] makes.
async fn insert_event_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    fresh: &[&Candidate<'_>],
) -> Result<(), LedgerError> {
    let mut journal = Rows::new(
        "INSERT INTO journal_posted (event_id, line, at, book, account, debit, credit, memo)",
        8,
        "",
    );
    let mut tags = Rows::new(
        "INSERT INTO request_tags (account, tag, at, event_id)",
        4,
        "ON CONFLICT DO NOTHING",
    );
    let mut deposits = Rows::new(
        "INSERT INTO deposits (payment, account, credits, fee, recharge, at)",
        6,
        "ON CONFLICT (payment) DO NOTHING",
    );
    for c in fresh {
        for (n, line) in c.effects.posted_lines().iter().enumerate() {
            journal.push([
                c.id.as_str().into(),
                Value::Int(n as i64),
                c.at.as_str().into(),
                line.book.as_str().into(),
                line.account.to_string().into(),
                nanos(line.debit).into(),
                nanos(line.credit).into(),
                line.memo.as_str().into(),
            ]);
        }
        if let Some(r) = &c.effects.request {
            for tag in &r.tags {
                tags.push([
                    c.account.as_str().into(),
                    tag.as_str().into(),
                    c.at.as_str().into(),
                    c.id.as_str().into(),
                ]);
            }
        }
        if let events::Event::DepositSettled(d) = &c.envelope.event {
            deposits.push([
                d.payment.as_str().into(),
                c.account.as_str().into(),
                nanos(d.credits).into(),
                nanos(d.fee).into(),
                d.recharge.map(|r| r.to_string()).into(),
                c.at.as_str().into(),
            ]);
        }
    }
    for rows in [journal, tags, deposits] {
        rows.run(tx).await?;
    }
    Ok(())
}

/// One account's summed changes.
#[derive(Debug, Default)]
struct Change {
    delta: Money,
    events: i64,
    name: Option<String>,
    limit: Option<Option<Money>>,
}

/// The account-level changes of a batch of events, summed, and the
/// auto-recharge states they fold into.
///
/// Its keys borrow from the batch's candidates (`'c`): summing an event
/// allocates nothing for the accounts, days, keys and gateways already met.
#[derive(Debug, Default)]
struct AccountChanges<'c> {
    accounts: BTreeMap<&'c str, Change>,
    /// (account, day) → spend and requests; a date orders as its text does.
    days: BTreeMap<(&'c str, NaiveDate), (Money, i64)>,
    /// (account, key) → its spend in the batch.
    keys: BTreeMap<(&'c str, &'c str), KeyTotal>,
    origins: BTreeMap<(&'c str, &'c str), u64>,
    /// (account, gateway process) → (events, latest time).
    instances: BTreeMap<(&'c str, &'c str), (i64, &'c str)>,
    /// gateway → (highest number, events, latest time).
    sequences: BTreeMap<&'c str, (u64, i64, &'c str)>,
    /// Auto-recharge states of the accounts touched, as loaded and folded,
    /// and whether they changed (absent: the default, unchanged).
    recharges: HashMap<String, (Recharge, bool)>,
    /// Balances before the batch of the accounts touched.
    balances: HashMap<String, Money>,
    /// Recharges this batch started.
    started: Vec<(AccountId, uuid::Uuid)>,
}

impl<'c> AccountChanges<'c> {
    /// Empty sums over the auto-recharge states and balances of the
    /// accounts `fresh` touches, loaded in one query each.
    async fn load(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        fresh: &[&Candidate<'_>],
    ) -> Result<AccountChanges<'c>, LedgerError> {
        let mut accounts: Vec<String> = fresh.iter().map(|c| c.account.clone()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let recharges = crate::recharge::load_all(tx, &accounts).await?;
        let mut balances = HashMap::with_capacity(accounts.len());
        let rows = fetch_in(
            tx,
            "SELECT account, balance FROM balances WHERE account",
            &[],
            &accounts,
            "",
        )
        .await?;
        for row in rows {
            balances.insert(
                row.try_get("account")?,
                Money::from_nanos(row.try_get("balance")?),
            );
        }
        Ok(AccountChanges {
            recharges: recharges
                .into_iter()
                .map(|(a, r)| (a, (r, false)))
                .collect(),
            balances,
            ..AccountChanges::default()
        })
    }

    /// Adds one fresh event, in log order.
    fn add(&mut self, c: &'c Candidate) {
        let e = &c.effects;
        let account = c.account.as_str();
        let change = self.accounts.entry(account).or_default();
        change.delta += e.balance_delta();
        change.events += 1;
        if e.name.is_some() {
            change.name.clone_from(&e.name);
        }
        if e.limit.is_some() {
            change.limit = e.limit;
        }
        if let Some(spent) = e.spend {
            let day = self.days.entry((account, e.day)).or_default();
            day.0 += spent;
            day.1 += 1;
            if let Some(key) = e.request.as_ref().map(|r| &r.key) {
                if spent > Money::ZERO && !key.is_empty() {
                    self.keys
                        .entry((account, key.as_str()))
                        .and_modify(|total| total.add(e.day, spent))
                        .or_insert_with(|| KeyTotal::new(e.day, spent));
                }
            }
        }
        if let Some(instance) = &e.instance {
            let count = self.instances.entry((account, instance)).or_default();
            count.0 += 1;
            if c.at.as_str() > count.1 {
                count.1 = &c.at;
            }
        }
        if let Some((gateway, seq)) = &e.origin {
            let sequence = self.sequences.entry(gateway).or_default();
            sequence.0 = sequence.0.max(*seq);
            sequence.1 += 1;
            if c.at.as_str() > sequence.2 {
                sequence.2 = &c.at;
            }
            let last = self.origins.entry((account, gateway)).or_default();
            *last = (*last).max(*seq);
        }
        self.recharge(c);
    }

    /// Folds the event into its account's auto-recharge, with the balance
    /// after it; notes a recharge it starts.
    fn recharge(&mut self, c: &Candidate) {
        let (state, dirty) = self.recharges.entry(c.account.clone()).or_default();
        if !state.enabled && !Recharge::settles_or_sets(&c.envelope.event) {
            return;
        }
        let before = self
            .balances
            .get(&c.account)
            .copied()
            .unwrap_or(Money::ZERO);
        let balance = before
            + self
                .accounts
                .get(c.account.as_str())
                .map_or(Money::ZERO, |a| a.delta);
        let was = state.clone();
        if let Some(started) = state.apply(c.envelope, balance) {
            self.started.push((c.effects.account, started));
        }
        *dirty |= *state != was;
    }

    /// Writes the sums: one statement per table (names, limits and
    /// auto-recharge settings, which change rarely, one per account).
    async fn write(self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), LedgerError> {
        let mut changed: Vec<_> = self.recharges.iter().filter(|(_, (_, d))| *d).collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (account, (state, _)) in changed {
            crate::recharge::store(&mut **tx, account, state).await?;
        }
        let mut balances = Rows::new(
            "INSERT INTO balances (account, name, balance, daily_limit, version)",
            5,
            "ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance,
                 version = balances.version + excluded.version",
        );
        for (account, change) in &self.accounts {
            balances.push([
                (*account).into(),
                "".into(),
                nanos(change.delta).into(),
                Value::MaybeInt(None),
                change.events.into(),
            ]);
        }
        balances.run(tx).await?;
        for (account, change) in &self.accounts {
            write_settings(tx, account, change).await?;
        }
        let mut days = Rows::new(
            "INSERT INTO day_spend (account, day, spent, requests)",
            4,
            "ON CONFLICT (account, day) DO UPDATE SET spent = day_spend.spent + excluded.spent,
                 requests = day_spend.requests + excluded.requests",
        );
        for ((account, day), (spent, requests)) in &self.days {
            days.push([
                (*account).into(),
                day.to_string().into(),
                nanos(*spent).into(),
                (*requests).into(),
            ]);
        }
        let mut keys = Rows::new(
            "INSERT INTO key_totals (account, key_id, life, month, month_spent, day, day_spent)",
            7,
            KEY_TOTALS_UPSERT,
        );
        for ((account, key), total) in &self.keys {
            total.push(&mut keys, account, key);
        }
        let mut instances = Rows::new(
            "INSERT INTO origin_instances (account, instance, events, last_at)",
            4,
            "ON CONFLICT (account, instance) DO UPDATE SET events = origin_instances.events + excluded.events,
                 last_at = CASE WHEN origin_instances.last_at > excluded.last_at
                                THEN origin_instances.last_at ELSE excluded.last_at END",
        );
        for ((account, instance), (events, at)) in &self.instances {
            instances.push([
                (*account).into(),
                (*instance).into(),
                (*events).into(),
                (*at).into(),
            ]);
        }
        let mut sequences = Rows::new(
            "INSERT INTO gateway_sequences (gateway, max_seq, events, last_at)",
            4,
            "ON CONFLICT (gateway) DO UPDATE SET
                 max_seq = CASE WHEN gateway_sequences.max_seq > excluded.max_seq
                                THEN gateway_sequences.max_seq ELSE excluded.max_seq END,
                 events = gateway_sequences.events + excluded.events,
                 last_at = CASE WHEN gateway_sequences.last_at > excluded.last_at
                                THEN gateway_sequences.last_at ELSE excluded.last_at END",
        );
        for (gateway, (max, events, at)) in &self.sequences {
            sequences.push([
                (*gateway).into(),
                as_i64(*max).into(),
                (*events).into(),
                (*at).into(),
            ]);
        }
        let mut origins = Rows::new(
            "INSERT INTO origins (account, gateway, seq)",
            3,
            "ON CONFLICT (account, gateway) DO UPDATE SET
                 seq = CASE WHEN origins.seq > excluded.seq THEN origins.seq ELSE excluded.seq END",
        );
        for ((account, gateway), seq) in &self.origins {
            origins.push([(*account).into(), (*gateway).into(), as_i64(*seq).into()]);
        }
        // The one row shared between accounts (a gateway's) goes last: a
        // batch folded in shards at once waits on the other only here.
        for rows in [days, keys, instances, origins, sequences] {
            rows.run(tx).await?;
        }
        Ok(())
    }
}

/// An account's new name or daily limit, when the batch set one.
async fn write_settings(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &str,
    change: &Change,
) -> Result<(), LedgerError> {
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
    Ok(states(store, &[account], today).await?.pop())
}

/// The states of those of `accounts` the ledger knows, with `today`'s
/// spend: four queries, whatever their number.
pub async fn states(
    store: &Store,
    accounts: &[AccountId],
    today: NaiveDate,
) -> Result<Vec<AccountState>, LedgerError> {
    let keys: Vec<String> = accounts.iter().map(ToString::to_string).collect();
    let mut conn = store.pool.acquire().await?;
    let spent: HashMap<String, i64> = fetch_in(
        &mut conn,
        "SELECT account, spent FROM day_spend WHERE day = $1 AND account",
        &[today.to_string().into()],
        &keys,
        "",
    )
    .await?
    .iter()
    .map(|row| Ok((row.try_get("account")?, row.try_get("spent")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let mut applied: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
    for row in fetch_in(
        &mut conn,
        "SELECT account, gateway, seq FROM origins WHERE account",
        &[],
        &keys,
        "",
    )
    .await?
    {
        let seq: i64 = row.try_get("seq")?;
        applied
            .entry(row.try_get("account")?)
            .or_default()
            .insert(row.try_get("gateway")?, u64::try_from(seq).unwrap_or(0));
    }
    let recent = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let mut applied_events: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
    for row in fetch_in(
        &mut conn,
        "SELECT account, instance, events FROM origin_instances WHERE last_at > $1 AND account",
        &[recent.into()],
        &keys,
        "",
    )
    .await?
    {
        let events: i64 = row.try_get("events")?;
        applied_events
            .entry(row.try_get("account")?)
            .or_default()
            .insert(row.try_get("instance")?, u64::try_from(events).unwrap_or(0));
    }
    let (this_month, this_day) = (month_of(today), today.to_string());
    let mut key_spend: HashMap<String, BTreeMap<String, events::KeySpend>> = HashMap::new();
    for row in fetch_in(
        &mut conn,
        "SELECT account, key_id, life, month, month_spent, day, day_spent FROM key_totals WHERE account",
        &[],
        &keys,
        "",
    )
    .await?
    {
        // A day or month later than the reader's (a gateway's clock ahead
        // of this one) counts as the current one, so a budget never sees
        // less than was spent. Both are written fixed-width: text order is
        // time order, and '' (no spend yet) comes first.
        let current = |period: String, now: &str, spent: i64| {
            Money::from_nanos(if period.as_str() >= now { spent } else { 0 })
        };
        let spend = events::KeySpend {
            today: current(row.try_get("day")?, &this_day, row.try_get("day_spent")?),
            month: current(row.try_get("month")?, &this_month, row.try_get("month_spent")?),
            lifetime: Money::from_nanos(row.try_get("life")?),
        };
        key_spend
            .entry(row.try_get("account")?)
            .or_default()
            .insert(row.try_get("key_id")?, spend);
    }
    let rows = fetch_in(
        &mut conn,
        "SELECT account, balance, daily_limit, version FROM balances WHERE account",
        &[],
        &keys,
        "",
    )
    .await?;
    let mut balances = HashMap::with_capacity(rows.len());
    for row in &rows {
        balances.insert(row.try_get::<String, _>("account")?, row);
    }
    let mut states = Vec::with_capacity(rows.len());
    for (account, key) in accounts.iter().zip(&keys) {
        let Some(row) = balances.get(key) else {
            continue;
        };
        let limit: Option<i64> = row.try_get("daily_limit")?;
        let version: i64 = row.try_get("version")?;
        states.push(AccountState {
            account: *account,
            balance: Money::from_nanos(row.try_get("balance")?),
            day: today,
            spent_today: Money::from_nanos(spent.get(key).copied().unwrap_or(0)),
            daily_limit: limit.map(Money::from_nanos),
            version: u64::try_from(version).unwrap_or(0),
            applied: applied.remove(key).unwrap_or_default(),
            applied_events: applied_events.remove(key).unwrap_or_default(),
            keys: key_spend.remove(key).unwrap_or_default(),
        });
    }
    Ok(states)
}

/// A key's UTC month, as `key_totals` writes it: `YYYY-MM`.
fn month_of(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

/// Adds a batch's key totals to the stored ones: ever always; the month's
/// and the day's when the batch's is the stored one, in place of it when
/// the batch's is later, not at all when earlier.
const KEY_TOTALS_UPSERT: &str = "ON CONFLICT (account, key_id) DO UPDATE SET
    life = key_totals.life + excluded.life,
    month_spent = CASE WHEN excluded.month > key_totals.month THEN excluded.month_spent
                       WHEN excluded.month = key_totals.month THEN key_totals.month_spent + excluded.month_spent
                       ELSE key_totals.month_spent END,
    month = CASE WHEN excluded.month > key_totals.month THEN excluded.month ELSE key_totals.month END,
    day_spent = CASE WHEN excluded.day > key_totals.day THEN excluded.day_spent
                     WHEN excluded.day = key_totals.day THEN key_totals.day_spent + excluded.day_spent
                     ELSE key_totals.day_spent END,
    day = CASE WHEN excluded.day > key_totals.day THEN excluded.day ELSE key_totals.day END";

/// One key's spend in a batch, folded in log order as the store folds
/// batches: ever, and in the latest day (and month) among its events.
#[derive(Debug)]
struct KeyTotal {
    life: Money,
    /// The latest day among the events.
    day: NaiveDate,
    day_spent: Money,
    month_spent: Money,
}

impl KeyTotal {
    fn new(day: NaiveDate, spent: Money) -> KeyTotal {
        KeyTotal {
            life: spent,
            day,
            day_spent: spent,
            month_spent: spent,
        }
    }

    fn add(&mut self, day: NaiveDate, spent: Money) {
        self.life += spent;
        let same_month = (day.year(), day.month()) == (self.day.year(), self.day.month());
        if day > self.day {
            if !same_month {
                self.month_spent = Money::ZERO;
            }
            self.day = day;
            self.day_spent = Money::ZERO;
        }
        if day == self.day {
            self.day_spent += spent;
        }
        if same_month || day == self.day {
            self.month_spent += spent;
        }
    }

    fn push(&self, rows: &mut Rows, account: &str, key: &str) {
        rows.push([
            account.into(),
            key.into(),
            nanos(self.life).into(),
            month_of(self.day).into(),
            nanos(self.month_spent).into(),
            self.day.to_string().into(),
            nanos(self.day_spent).into(),
        ]);
    }
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
