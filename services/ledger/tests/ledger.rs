//! The ledger against the real backends: NATS JetStream + PostgreSQL and
//! the embedded SQLite pair, each isolated per test.

use std::sync::Arc;
use std::time::Duration;

use eventlog::EventLog;
use events::{
    AccountId, AccountState, CreditsGranted, DailyLimitSet, DepositSettled, Envelope, Event,
    ACCOUNTS_BUCKET,
};
use ledger::reconcile::reconcile;
use ledger::Ledger;
use money::Money;
use test_support::backends::Backends;
use test_support::faults::RefusingPuts;

fn usd(s: &str) -> Money {
    s.parse().unwrap()
}

fn usage(account: AccountId, seq: u64, cost: Money) -> Envelope {
    test_support::backends::usage_event(account, seq, cost)
}

async fn publish(log: &dyn EventLog, envelope: &Envelope) {
    publish_as(log, envelope, &envelope.id.to_string()).await;
}

/// Appends `envelope` under the log id `id`: another id than the event's
/// is the same event sent again after the log's duplicate window.
async fn publish_as(log: &dyn EventLog, envelope: &Envelope, id: &str) {
    log.append(envelope.event.subject(), id, &envelope.encode())
        .await
        .unwrap();
}

/// Publishes a grant of `amount` demo credits to `account`.
async fn grant(backends: &Backends, account: AccountId, amount: Money) {
    let grant = Envelope::new(Event::CreditsGranted(CreditsGranted {
        account,
        amount,
        reason: "demo credits".into(),
    }));
    publish(&*backends.log, &grant).await;
}

/// A ledger on `backends` and its durable consumer.
async fn ledger_on(backends: &Backends) -> (Ledger, Box<dyn eventlog::Consumer>) {
    let ledger = Ledger::new(Arc::clone(&backends.log), backends.store.clone())
        .await
        .unwrap();
    let consumer = backends
        .log
        .consumer(ledger::service::CONSUMER)
        .await
        .unwrap();
    (ledger, consumer)
}

/// Appends `count` usage events of `account`, the n-th costing `n ×
/// nanos_each` nano-dollars (distinct, so a miscount shows); their total.
async fn publish_charges(
    backends: &Backends,
    account: AccountId,
    count: u64,
    nanos_each: i64,
) -> Money {
    let mut spent = Money::ZERO;
    for seq in 1..=count {
        let cost = Money::from_nanos(nanos_each * seq as i64);
        spent += cost;
        publish(&*backends.log, &usage(account, seq, cost)).await;
    }
    spent
}

/// Runs a ledger until `count` records are consumed (bounded: 60 s).
async fn fold(backends: &Backends, count: usize) {
    let (ledger, mut consumer) = ledger_on(backends).await;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ledger stalled at {seen}/{count}"
        );
        seen += ledger.step(consumer.as_mut()).await.unwrap();
    }
}

/// Reconcile finds the ledger's books and the log in agreement.
async fn assert_books_match(backends: &Backends) {
    let found = reconcile(&*backends.log, &backends.store).await.unwrap();
    assert!(found.is_empty(), "reconcile found {found:?}");
}

async fn balance(backends: &Backends, account: AccountId) -> Money {
    let state =
        ledger::projection::state(&backends.store, account, chrono::Utc::now().date_naive())
            .await
            .unwrap()
            .expect("account known");
    state.balance
}

async fn exactly_once(backends: Backends) {
    let account = AccountId::new();
    publish(
        &*backends.log,
        &Envelope::new(Event::DepositSettled(DepositSettled {
            account,
            credits: usd("100"),
            fee: usd("4"),
            payment: "pi_1".into(),
            recharge: None,
        })),
    )
    .await;
    let mut spent = Money::ZERO;
    let mut appended = 1;
    for seq in 1..=50u64 {
        let cost = Money::from_nanos(1_234_567 * seq as i64);
        let event = usage(account, seq, cost);
        spent += cost;
        publish(&*backends.log, &event).await;
        appended += 1;
        if seq % 5 == 0 {
            // The same append again (the log drops it) …
            publish(&*backends.log, &event).await;
            // … and the same event under another log id, as a spool replay
            // after the log's duplicate window would be: the ledger drops it.
            publish_as(&*backends.log, &event, &format!("replay-{}", event.id)).await;
            appended += 1;
        }
    }
    // A publisher's batch record whose append timed out although it landed,
    // sent again regrouped with a new event: only the new one counts.
    let (earlier, later) = (
        usage(account, 1_001, usd("0.01")),
        usage(account, 1_002, usd("0.02")),
    );
    spent += usd("0.03");
    for (id, batch) in [
        ("batch-1", vec![earlier.clone()]),
        ("batch-2", vec![earlier.clone(), later.clone()]),
    ] {
        backends
            .log
            .append("events.usage", id, &Envelope::encode_all(&batch))
            .await
            .unwrap();
        appended += 1;
    }
    fold(&backends, appended).await;
    assert_eq!(balance(&backends, account).await, usd("100") - spent);
    let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests")
        .fetch_one(&backends.store.pool)
        .await
        .unwrap();
    assert_eq!(requests, 52);
    let (debits, credits): (i64, i64) = sqlx::query_as(
        "SELECT CAST(SUM(debit) AS BIGINT), CAST(SUM(credit) AS BIGINT) FROM journal",
    )
    .fetch_one(&backends.store.pool)
    .await
    .unwrap();
    assert_eq!(debits, credits, "the journal balances");
    assert_eq!(debits, usd("104").nanos() + spent.nanos());
    // The gateways' view.
    let bucket = backends.log.bucket(ACCOUNTS_BUCKET).await.unwrap();
    let entry = bucket
        .get(&account.to_string())
        .await
        .unwrap()
        .expect("state published");
    let state: AccountState = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(state.balance, usd("100") - spent);
    assert_eq!(state.spent_today, spent);
    assert_eq!(state.applied["gw-test"], 1_002);
    let key = state.keys["abcdef012345"];
    assert_eq!(
        (key.today, key.month, key.lifetime),
        (spent, spent, spent),
        "the key's spend, each replay counted once"
    );
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

/// A batch some of whose events were applied before (a redelivery, or a
/// replay regrouped with new events): its first claim refuses it, and the
/// batch is folded again counting only the new ones, on every table.
async fn a_batch_partly_applied_before_counts_only_its_new_events(backends: Backends) {
    let account = AccountId::new();
    let grant = Envelope::new(Event::CreditsGranted(CreditsGranted {
        account,
        amount: usd("10"),
        reason: "test".into(),
    }));
    publish(&*backends.log, &grant).await;
    let events: Vec<Envelope> = (1..=12u64)
        .map(|seq| usage(account, seq, Money::from_nanos(1_000_000 * seq as i64)))
        .collect();
    for event in &events[..5] {
        publish(&*backends.log, event).await;
    }
    fold(&backends, 6).await;
    // Events 3 to 12 in one record under a new id: 3, 4 and 5 were applied.
    backends
        .log
        .append(
            "events.usage",
            "regrouped",
            &Envelope::encode_all(&events[2..]),
        )
        .await
        .unwrap();
    fold(&backends, 1).await;
    let spent: i64 = (1..=12).map(|seq| 1_000_000 * seq).sum();
    assert_eq!(
        balance(&backends, account).await,
        usd("10") - Money::from_nanos(spent)
    );
    let count = |sql: &'static str| {
        let pool = backends.store.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM requests").await, 12);
    // Each event claimed once: the grant in applied_events, usage by its request row.
    assert_eq!(count("SELECT COUNT(*) FROM applied_events").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM journal").await, 2 + 12 * 2);
    assert_eq!(
        count("SELECT requests FROM day_spend").await,
        12,
        "each request counted once in the day's total"
    );
    let state: AccountState = serde_json::from_slice(
        &backends
            .log
            .bucket(ACCOUNTS_BUCKET)
            .await
            .unwrap()
            .get(&account.to_string())
            .await
            .unwrap()
            .expect("state published")
            .value,
    )
    .unwrap();
    assert_eq!(
        state.keys["abcdef012345"].lifetime,
        Money::from_nanos(spent)
    );
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

async fn killed_mid_stream(backends: Backends) {
    let account = AccountId::new();
    grant(&backends, account, usd("25")).await;
    let mut spent = Money::ZERO;
    let mut seq = 0u64;
    let mut wave = |n: usize| {
        (0..n)
            .map(|_| {
                seq += 1;
                let cost = Money::from_nanos(999_999 + seq as i64);
                spent += cost;
                usage(account, seq, cost)
            })
            .collect::<Vec<_>>()
    };
    let (first, second, third) = (wave(100), wave(100), wave(100));
    // A ledger runs through the first wave, and is killed (its task
    // aborted) while the second is arriving.
    let ledger = Arc::new(
        Ledger::new(Arc::clone(&backends.log), backends.store.clone())
            .await
            .unwrap(),
    );
    let running = {
        let ledger = Arc::clone(&ledger);
        tokio::spawn(async move { ledger.run(std::future::pending()).await })
    };
    for event in &first {
        publish(&*backends.log, event).await;
    }
    let store = backends.store.clone();
    let applied = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT COUNT(*) FROM applied_events) + (SELECT COUNT(*) FROM requests)",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while applied().await < 101 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ledger did not fold"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (i, event) in second.iter().enumerate() {
        publish(&*backends.log, event).await;
        if i == 50 {
            running.abort();
        }
    }
    let _ = running.await;
    for event in &third {
        publish(&*backends.log, event).await;
    }
    assert!(
        applied().await < 301,
        "the first ledger was killed before the end"
    );
    // A new ledger picks up; whatever the old one had fetched but not acked comes again.
    let fresh = Ledger::new(Arc::clone(&backends.log), backends.store.clone())
        .await
        .unwrap();
    let mut consumer = backends
        .log
        .consumer(ledger::service::CONSUMER)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while applied().await < 301 {
        fresh.step(consumer.as_mut()).await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "resumed ledger stalled"
        );
    }
    assert_eq!(applied().await, 301);
    assert_eq!(balance(&backends, account).await, usd("25") - spent);
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

async fn reconcile_finds_a_corrupted_row(backends: Backends) {
    let account = AccountId::new();
    for event in [
        Event::CreditsGranted(CreditsGranted {
            account,
            amount: usd("10"),
            reason: "demo credits".into(),
        }),
        Event::DailyLimitSet(DailyLimitSet {
            account,
            limit: Some(usd("5")),
        }),
    ] {
        publish(&*backends.log, &Envelope::new(event)).await;
    }
    publish(&*backends.log, &usage(account, 1, usd("0.5"))).await;
    fold(&backends, 3).await;
    assert_books_match(&backends).await;
    sqlx::query("UPDATE balances SET balance = balance + 1 WHERE account = $1")
        .bind(account.to_string())
        .execute(&backends.store.pool)
        .await
        .unwrap();
    // A usage event's lines are its request row: a changed cost shows as both.
    sqlx::query("UPDATE requests SET cost = cost + 7")
        .execute(&backends.store.pool)
        .await
        .unwrap();
    let differences = reconcile(&*backends.log, &backends.store).await.unwrap();
    assert_eq!(differences.len(), 3, "{differences:#?}");
    assert!(differences[0].starts_with("account") && differences[0].contains(&account.to_string()));
    assert!(differences[1..]
        .iter()
        .all(|d| d.starts_with("journal line")));
    // The CSV export carries every journal line.
    let mut csv = Vec::new();
    let today = chrono::Utc::now().date_naive();
    let rows = ledger::export::export(&backends.store, None, today, today, &mut csv)
        .await
        .unwrap();
    assert_eq!(rows, 4);
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with(ledger::export::HEADER));
    assert!(csv.contains(",grants,") && csv.contains(",10,0,grant: demo credits"));
    backends.cleanup().await;
}

/// Reconcile while the ledger folds: events after its ack position are
/// compared once the store has claimed them (a batch committed and not yet
/// acked), not before (appended, not folded yet); a claim removed from
/// such a batch still shows, as the balance it moved.
async fn reconcile_compares_what_the_ledger_has_folded(backends: Backends) {
    let account = AccountId::new();
    grant(&backends, account, usd("10")).await;
    for seq in 1..=2 {
        publish(&*backends.log, &usage(account, seq, usd("0.01"))).await;
    }
    fold(&backends, 3).await;
    let late: Vec<Envelope> = (3..=12)
        .map(|seq| usage(account, seq, usd("0.02")))
        .collect();
    for event in &late {
        publish(&*backends.log, event).await;
    }
    // Folded and committed; the last batch neither published nor acked.
    let (ledger, consumer) = ledger_on(&backends).await;
    let mut pipeline = ledger.pipeline(consumer);
    let mut folded = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while folded < late.len() {
        assert!(tokio::time::Instant::now() < deadline, "ledger stalled");
        folded += pipeline.step().await.unwrap();
    }
    for seq in 13..=15 {
        publish(&*backends.log, &usage(account, seq, usd("0.04"))).await;
    }
    let audit = |backends: &Backends| {
        let (log, store) = (Arc::clone(&backends.log), backends.store.clone());
        async move {
            ledger::reconcile::audit(&*log, &store, ledger::reconcile::DEFAULT_GRACE)
                .await
                .unwrap()
        }
    };
    let found = audit(&backends).await;
    assert!(found.differences.is_empty(), "{found}");
    assert_eq!((found.through, found.unfolded), (16, 3), "{found}");
    assert!((3..13).contains(&found.folded_through), "{found:?}");
    assert!(found.is_clean() && found.in_flight.is_empty(), "{found}");
    assert!(found
        .to_string()
        .contains("3 later events were not in the books yet"));

    let last = late.last().unwrap().id.to_string();
    let removed = sqlx::query("DELETE FROM requests WHERE event_id = $1")
        .bind(&last)
        .execute(&backends.store.pool)
        .await
        .unwrap();
    assert_eq!(removed.rows_affected(), 1);
    let found = audit(&backends).await;
    assert!(
        found.differences.iter().any(|d| d.starts_with("account")),
        "a claim removed, its charge kept: {found}"
    );
    backends.cleanup().await;
}

/// Numbers of a gateway's sequence without an event: lost once a later
/// event is older than the grace, in flight before that; `reconcile` and the
/// ledger's own check both say so.
async fn lost_usage_shows_as_a_gap(backends: Backends) {
    let account = AccountId::new();
    publish(
        &*backends.log,
        &Envelope::new(Event::CreditsGranted(CreditsGranted {
            account,
            amount: usd("10"),
            reason: "test".into(),
        })),
    )
    .await;
    let now = chrono::Utc::now();
    for (seq, age) in [(1, 10), (2, 10), (4, 10), (7, 0)] {
        let mut event = usage(account, seq, usd("0.01"));
        event.at = now - chrono::Duration::minutes(age);
        publish(&*backends.log, &event).await;
    }
    fold(&backends, 5).await;
    let grace = ledger::reconcile::DEFAULT_GRACE;
    let audit = ledger::reconcile::audit(&*backends.log, &backends.store, grace)
        .await
        .unwrap();
    assert!(audit.differences.is_empty(), "{audit}");
    let runs = |gaps: &[ledger::gaps::Gap]| -> Vec<(u64, u64)> {
        gaps.iter().map(|g| (g.first, g.last)).collect()
    };
    assert_eq!(runs(&audit.lost["gw-test"]), [(3, 3)]);
    assert_eq!(runs(&audit.in_flight["gw-test"]), [(5, 6)]);
    assert!(!audit.is_clean());
    let report = audit.to_string();
    assert!(
        report.contains("gateway gw-test: 1 usage events lost"),
        "{report}"
    );
    // The ledger's running check: nothing is settled at first; a grace
    // later every number up to the noted 7 must have its event.
    let mut check = ledger::sequences::Check::default();
    assert!(check
        .run(&backends.store, now, grace)
        .await
        .unwrap()
        .is_empty());
    let found = check
        .run(
            &backends.store,
            now + grace + chrono::Duration::minutes(1),
            grace,
        )
        .await
        .unwrap();
    assert_eq!(
        found,
        [ledger::sequences::Finding {
            gateway: "gw-test".into(),
            verified: 2,
            missing: 3,
        }]
    );
    let (missing,): (i64,) =
        sqlx::query_as("SELECT missing FROM gateway_sequences WHERE gateway = 'gw-test'")
            .fetch_one(&backends.store.pool)
            .await
            .unwrap();
    assert_eq!(missing, 3);
    backends.cleanup().await;
}

/// A batch gathers for the ledger's linger: records that come meanwhile
/// fold in the first one's transaction; without a linger, each goes alone.
async fn a_batch_gathers_for_the_linger(backends: Backends) {
    let account = AccountId::new();
    let (ledger, mut consumer) = ledger_on(&backends).await;
    let paced = |first: u64| {
        let log = Arc::clone(&backends.log);
        async move {
            for seq in first..first + 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                publish(&*log, &usage(account, seq, usd("0.01"))).await;
            }
        }
    };
    publish(&*backends.log, &usage(account, 1, usd("0.01"))).await;
    let alone = ledger.step(consumer.as_mut()).await.unwrap();
    assert_eq!(alone, 1, "nothing else had come");
    paced(2).await;
    let mut rest = 0;
    while rest < 4 {
        rest += ledger.step(consumer.as_mut()).await.unwrap();
    }
    let ledger = ledger.with_linger(Duration::from_secs(2));
    publish(&*backends.log, &usage(account, 6, usd("0.01"))).await;
    let (gathered, ()) = tokio::join!(ledger.step(consumer.as_mut()), paced(7));
    assert_eq!(
        gathered.unwrap(),
        5,
        "the four that came within the linger joined the first"
    );
    assert_eq!(balance(&backends, account).await, Money::ZERO - usd("0.10"));
    backends.cleanup().await;
}

/// A batch stops gathering at its byte bound: records holding megabytes of
/// a publisher's backlog fold over several transactions, every event once.
async fn a_batch_is_bounded_in_bytes(backends: Backends) {
    let account = AccountId::new();
    let one = usage(account, 1, usd("0.000001")).encode().len();
    let per_record = backends.log.max_record_bytes() * 9 / 10 / (one + 1);
    let records = 16 * 1024 * 1024 / (per_record * one) + 3;
    let mut seq = 0;
    for r in 0..records {
        let events: Vec<Envelope> = (0..per_record)
            .map(|_| {
                seq += 1;
                usage(account, seq as u64, usd("0.000001"))
            })
            .collect();
        backends
            .log
            .append(
                "events.usage",
                &format!("big-{r}"),
                &Envelope::encode_all(&events),
            )
            .await
            .unwrap();
    }
    let (ledger, mut consumer) = ledger_on(&backends).await;
    let first = ledger.step(consumer.as_mut()).await.unwrap();
    assert!(
        first >= 1 && first < records,
        "{first} of {records} records in one batch"
    );
    let mut folded = first;
    while folded < records {
        folded += ledger.step(consumer.as_mut()).await.unwrap();
    }
    assert_eq!(backends.usage_applied().await, seq as i64);
    assert_eq!(
        balance(&backends, account).await,
        Money::ZERO - Money::from_nanos(1_000 * seq as i64)
    );
    backends.cleanup().await;
}

/// A usage event of `cost` nano-dollars on `day` (noon UTC).
fn usage_on(account: AccountId, seq: u64, day: &str, cost: i64) -> Envelope {
    let mut event = usage(account, seq, Money::from_nanos(cost));
    event.at = format!("{day}T12:00:00Z").parse().unwrap();
    event
}

/// A key's spend as three running sums would give it (ever, per month, per
/// day), read on `today`.
fn key_spend_on(spends: &[(&str, i64)], today: &str) -> (Money, Money, Money) {
    let sum = |keep: &dyn Fn(&str) -> bool| {
        Money::from_nanos(spends.iter().filter(|(d, _)| keep(d)).map(|(_, c)| c).sum())
    };
    (
        sum(&|d| d == today),
        sum(&|d| d[..7] == today[..7]),
        sum(&|_| true),
    )
}

/// A key's day, month and lifetime spend, folded from events that come late
/// and across a month's end, within a batch and across batches, read as the
/// day's budget reads it: what three running sums per key would give.
async fn key_totals_follow_days_and_months_in_any_order(backends: Backends) {
    let account = AccountId::new();
    let batches: [&[(&str, i64)]; 3] = [
        &[("2026-11-29", 1), ("2026-11-30", 2), ("2026-11-29", 4)],
        &[("2026-12-01", 8), ("2026-11-30", 16)],
        &[("2026-12-02", 32), ("2026-12-01", 64), ("2026-12-02", 128)],
    ];
    // The key's (today, month, ever) as the state read on `today` has them.
    let read = |today: &str| {
        let store = backends.store.clone();
        let today = today.parse().unwrap();
        async move {
            let state = ledger::projection::state(&store, account, today)
                .await
                .unwrap()
                .expect("account known");
            let key = state.keys["abcdef012345"];
            (key.today, key.month, key.lifetime)
        }
    };
    let mut spends: Vec<(&str, i64)> = Vec::new();
    let mut seq = 0;
    for batch in batches {
        for &(day, cost) in batch {
            seq += 1;
            publish(&*backends.log, &usage_on(account, seq, day, cost)).await;
            spends.push((day, cost));
        }
        fold(&backends, batch.len()).await;
        let latest = spends.iter().map(|(d, _)| *d).max().unwrap();
        assert_eq!(
            read(latest).await,
            key_spend_on(&spends, latest),
            "on {latest}"
        );
    }
    let all = key_spend_on(&spends, "2026-12-02");
    assert_eq!(all.2, Money::from_nanos(255));
    // The next day and the next month start from nothing.
    assert_eq!(read("2026-12-03").await, (Money::ZERO, all.1, all.2));
    assert_eq!(read("2027-01-01").await, (Money::ZERO, Money::ZERO, all.2));
    // A reader whose clock is behind the gateways' sees the latest day as
    // its own: never less than was spent.
    assert_eq!(read("2026-12-01").await, all);
    backends.cleanup().await;
}

/// The migration from `key_spend` (three rows per key) keeps what budgets
/// read: each store's text, run on rows as the previous ledger wrote them.
async fn key_spend_rows_migrate_to_one_row_per_key(backends: Backends) {
    backends.store.migrate().await.unwrap();
    let pool = &backends.store.pool;
    sqlx::raw_sql(
        "CREATE TABLE key_spend (account TEXT NOT NULL, key_id TEXT NOT NULL, period TEXT NOT NULL,
                                 spent BIGINT NOT NULL, PRIMARY KEY (account, key_id, period));
         INSERT INTO key_spend VALUES
             ('a1', 'k1', 'life', 700), ('a1', 'k1', 'm:2026-11', 300), ('a1', 'k1', 'm:2026-12', 200),
             ('a1', 'k1', 'd:2026-11-30', 100), ('a1', 'k1', 'd:2026-12-01', 50), ('a1', 'k1', 'd:2026-12-02', 150),
             ('a1', 'k2', 'life', 9), ('a1', 'k2', 'm:2026-10', 9), ('a1', 'k2', 'd:2026-10-31', 9),
             ('a2', 'k1', 'life', 5000000000000), ('a2', 'k1', 'm:2026-12', 5000000000000),
             ('a2', 'k1', 'd:2026-12-02', 5000000000000);
         DROP TABLE key_totals;",
    )
    .execute(pool)
    .await
    .unwrap();
    let migration = backends.store.migration_sql(13).expect("migration 13");
    sqlx::raw_sql(migration).execute(pool).await.unwrap();
    let rows: Vec<(String, String, i64, String, i64, String, i64)> = sqlx::query_as(
        "SELECT account, key_id, life, month, month_spent, day, day_spent FROM key_totals
         ORDER BY account, key_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let row = |a: &str, k: &str, life, m: &str, ms, d: &str, ds| {
        (
            a.to_owned(),
            k.to_owned(),
            life,
            m.to_owned(),
            ms,
            d.to_owned(),
            ds,
        )
    };
    assert_eq!(
        rows,
        [
            row("a1", "k1", 700, "2026-12", 200, "2026-12-02", 150),
            row("a1", "k2", 9, "2026-10", 9, "2026-10-31", 9),
            row(
                "a2",
                "k1",
                5_000_000_000_000,
                "2026-12",
                5_000_000_000_000,
                "2026-12-02",
                5_000_000_000_000
            ),
        ]
    );
    backends.cleanup().await;
}

/// Books written before usage events were claimed by their request rows
/// (a row each in `applied_events`, the log position there) migrate to the
/// new claims: positions kept, the old claim rows gone, reconcile clean,
/// and the same events delivered again change nothing.
async fn usage_claims_migrate_to_the_request_rows(backends: Backends) {
    let account = AccountId::new();
    grant(&backends, account, usd("10")).await;
    let events: Vec<Envelope> = (1..=20)
        .map(|seq| usage(account, seq, Money::from_nanos(1_000_000)))
        .collect();
    for event in &events {
        publish(&*backends.log, event).await;
    }
    fold(&backends, 21).await;
    let pool = &backends.store.pool;
    let positions = || async {
        sqlx::query_as::<_, (String, i64)>("SELECT event_id, seq FROM requests ORDER BY event_id")
            .fetch_all(pool)
            .await
            .unwrap()
    };
    let folded = positions().await;
    assert_eq!(folded.len(), 20);
    assert!(folded.iter().all(|(_, seq)| *seq > 0));
    // The books as the previous ledger left them.
    sqlx::raw_sql(
        "INSERT INTO applied_events (event_id, seq, kind, account, at)
             SELECT event_id, seq, 'usage_recorded', account, at FROM requests;
         ALTER TABLE requests DROP COLUMN seq;",
    )
    .execute(pool)
    .await
    .unwrap();
    let migration = backends.store.migration_sql(14).expect("migration 14");
    sqlx::raw_sql(migration).execute(pool).await.unwrap();
    assert_eq!(
        positions().await,
        folded,
        "each request keeps its log position"
    );
    let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM applied_events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(claims, 1, "only the grant keeps a row of its own");
    assert_books_match(&backends).await;
    for event in &events {
        publish_as(&*backends.log, event, &format!("again-{}", event.id)).await;
    }
    fold(&backends, 20).await;
    assert_eq!(backends.usage_applied().await, 20);
    assert_eq!(balance(&backends, account).await, usd("10") - usd("0.02"));
    backends.cleanup().await;
}

/// A ledger stopped between a batch's commit and the publish of its states
/// (the pipeline holds one such batch) loses nothing: the next one gets the
/// batch again, counts it once and publishes the states.
async fn a_batch_committed_but_not_published_comes_again(backends: Backends) {
    let account = AccountId::new();
    let earlier = publish_charges(&backends, account, 39, 1_000_003).await;
    let (ledger, consumer) = ledger_on(&backends).await;
    let mut pipeline = ledger.pipeline(consumer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut folded = 0;
    while folded < 39 {
        assert!(tokio::time::Instant::now() < deadline, "ledger stalled");
        folded += pipeline.step().await.unwrap();
    }
    pipeline.flush().await.unwrap();
    // The last charge folds alone, so no other batch's publish (which reads
    // the account's state as it is by then) can carry it out early.
    let last = Money::from_nanos(1_000_003 * 40);
    publish(&*backends.log, &usage(account, 40, last)).await;
    while pipeline.step().await.unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "ledger stalled");
    }
    let spent = earlier + last;
    assert_eq!(backends.usage_applied().await, 40);
    let bucket = backends.log.bucket(ACCOUNTS_BUCKET).await.unwrap();
    let published = || async {
        let entry = bucket.get(&account.to_string()).await.unwrap()?;
        Some(serde_json::from_slice::<AccountState>(&entry.value).unwrap())
    };
    assert_eq!(
        published().await.map(|s| s.balance),
        Some(Money::ZERO - earlier),
        "the last batch is still in flight"
    );
    drop(pipeline);
    drop(ledger);
    let (again, consumer) = ledger_on(&backends).await;
    let mut pipeline = again.pipeline(consumer);
    let state = loop {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        pipeline.step().await.unwrap();
        pipeline.flush().await.unwrap();
        match published().await {
            Some(state) if state.balance == Money::ZERO - spent => break state,
            _ => {}
        }
    };
    assert_eq!(state.keys["abcdef012345"].lifetime, spent);
    assert_eq!(backends.usage_applied().await, 40);
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

/// A batch is acked only once its accounts' states are stored: the
/// embedded log writes states and acks without an fsync, which is safe
/// only because a state is always written before its records' ack (a
/// crash then loses the ack with the state, and the records come again).
/// Here every put fails: the batch is folded but nothing is acked; once
/// puts work, the states are published and then the records acked.
async fn a_batch_is_acked_only_after_its_states_are_stored(backends: Backends) {
    let account = AccountId::new();
    let spent = publish_charges(&backends, account, 10, 2_000_001).await;
    let last = backends.log.last_seq().await.unwrap();
    let refusing = Arc::new(RefusingPuts::new(Arc::clone(&backends.log)));
    let log: Arc<dyn EventLog> = Arc::clone(&refusing) as Arc<dyn EventLog>;
    let ledger = Ledger::new(Arc::clone(&log), backends.store.clone())
        .await
        .unwrap();
    let consumer = log.consumer(ledger::service::CONSUMER).await.unwrap();
    let mut pipeline = ledger.pipeline(consumer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // A step fails once it meets the previous batch's failed publish.
    while backends.usage_applied().await < 10 {
        assert!(tokio::time::Instant::now() < deadline, "ledger stalled");
        let _ = pipeline.step().await;
    }
    let _ = pipeline.flush().await;
    assert_eq!(
        backends.log.acked(ledger::service::CONSUMER).await.unwrap(),
        0,
        "nothing acked while its states are not stored"
    );
    drop(pipeline);
    drop(ledger);
    refusing.refuse(false);
    let (again, consumer) = ledger_on(&backends).await;
    let mut pipeline = again.pipeline(consumer);
    while backends.log.acked(ledger::service::CONSUMER).await.unwrap() < last {
        assert!(tokio::time::Instant::now() < deadline, "never acked");
        pipeline.step().await.unwrap();
        pipeline.flush().await.unwrap();
    }
    let bucket = backends.log.bucket(ACCOUNTS_BUCKET).await.unwrap();
    let entry = bucket.get(&account.to_string()).await.unwrap().unwrap();
    let state: AccountState = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(state.balance, Money::ZERO - spent);
    assert_eq!(backends.usage_applied().await, 10);
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

/// A batch holds up to 1,024 records on SQLite (whose one connection the
/// readers share) and 2,048 on PostgreSQL.
async fn a_batch_holds_more_records_on_postgres(backends: Backends) {
    let account = AccountId::new();
    let envelopes: Vec<Envelope> = (1..=2_100u64)
        .map(|seq| usage(account, seq, Money::from_nanos(1_000)))
        .collect();
    backends.append_all(&envelopes).await;
    let ledger = Ledger::new(Arc::clone(&backends.log), backends.store.clone())
        .await
        .unwrap()
        .with_linger(Duration::from_secs(2));
    let mut consumer = backends
        .log
        .consumer(ledger::service::CONSUMER)
        .await
        .unwrap();
    let most = match backends.store.backend {
        store::Backend::Postgres => 2_048,
        store::Backend::Sqlite => 1_024,
    };
    assert_eq!(ledger.step(consumer.as_mut()).await.unwrap(), most);
    backends.cleanup().await;
}

/// A pipeline dropped while its gathering task holds records it pulled
/// ahead (more than two batches are waiting) loses none: they come again
/// to the next ledger and count once.
async fn records_gathered_ahead_come_again_after_a_drop(backends: Backends) {
    const EVENTS: u64 = 2_500;
    let account = AccountId::new();
    let mut spent = Money::ZERO;
    let envelopes: Vec<Envelope> = (1..=EVENTS)
        .map(|seq| {
            let cost = Money::from_nanos(1_000 + seq as i64);
            spent += cost;
            usage(account, seq, cost)
        })
        .collect();
    backends.append_all(&envelopes).await;
    let (ledger, consumer) = ledger_on(&backends).await;
    let mut pipeline = ledger.pipeline(consumer);
    let first = pipeline.step().await.unwrap();
    assert!(first > 0 && (first as u64) < EVENTS, "one batch of {first}");
    // Give the gathering task time to pull the next batch ahead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(pipeline);
    drop(ledger);
    let (again, consumer) = ledger_on(&backends).await;
    let mut pipeline = again.pipeline(consumer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while backends.usage_applied().await < EVENTS as i64 {
        assert!(tokio::time::Instant::now() < deadline, "records lost");
        pipeline.step().await.unwrap();
    }
    pipeline.flush().await.unwrap();
    assert_eq!(backends.usage_applied().await, EVENTS as i64);
    assert_eq!(balance(&backends, account).await, Money::ZERO - spent);
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

/// On PostgreSQL a batch folds in two transactions at once, its events
/// split by account. One that commits while the other fails (here a
/// trigger refuses one account's balance) leaves the batch unacked; when
/// it comes again, the committed half is not counted twice.
#[tokio::test]
async fn a_batch_half_committed_counts_each_event_once() {
    let backends = Backends::distributed().await;
    let in_shard = |shard: u128| loop {
        let account = AccountId::new();
        if account.0.as_u128() % 2 == shard {
            break account;
        }
    };
    let (kept, refused) = (in_shard(0), in_shard(1));
    let mut spent = Money::ZERO;
    for seq in 1..=20u64 {
        let cost = Money::from_nanos(2_000_000 + seq as i64);
        spent += cost;
        publish(&*backends.log, &usage(kept, seq, cost)).await;
        publish(&*backends.log, &usage(refused, seq, cost)).await;
    }
    let (ledger, mut consumer) = ledger_on(&backends).await;
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.account = '{refused}' THEN RAISE EXCEPTION 'refused'; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON balances
         FOR EACH ROW EXECUTE FUNCTION refuse();"
    ))
    .execute(&backends.store.pool)
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        if ledger.step(consumer.as_mut()).await.is_err() {
            break;
        }
    }
    let applied = |account: AccountId| {
        let pool = backends.store.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM requests WHERE account = $1")
                .bind(account.to_string())
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(applied(kept).await > 0, "the other shard committed");
    assert_eq!(applied(refused).await, 0);
    drop(consumer);
    drop(ledger);
    sqlx::raw_sql("DROP TRIGGER refuse ON balances")
        .execute(&backends.store.pool)
        .await
        .unwrap();
    fold(&backends, 1).await;
    while backends.usage_applied().await < 40 {
        assert!(tokio::time::Instant::now() < deadline, "ledger stalled");
        fold(&backends, 1).await;
    }
    assert_eq!(applied(kept).await, 20);
    assert_eq!(applied(refused).await, 20);
    assert_eq!(balance(&backends, kept).await, Money::ZERO - spent);
    assert_eq!(balance(&backends, refused).await, Money::ZERO - spent);
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

/// Books written while usage events had journal lines of their own (two
/// rows each) migrate to lines read from their request rows: the journal
/// shows the same lines, times and memos before and after, no line twice,
/// reconcile is clean, and a new ledger writes no usage lines of its own.
async fn usage_lines_migrate_to_their_request_rows(backends: Backends) {
    let account = AccountId::new();
    grant(&backends, account, usd("10")).await;
    let mut events: Vec<Envelope> = (1..=6)
        .map(|seq| usage(account, seq, Money::from_nanos(1_000_003 * seq as i64)))
        .collect();
    // Free usage has no lines, before as after.
    events.push(usage(account, 7, Money::ZERO));
    for event in &events {
        publish(&*backends.log, event).await;
    }
    fold(&backends, 8).await;
    let pool = &backends.store.pool;
    let journal = || async {
        sqlx::query_as::<_, (String, i32, String, String, String, i64, i64, String)>(
            "SELECT event_id, line, at, book, account, debit, credit, memo FROM journal
             ORDER BY event_id, line",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    };
    let posted = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM journal_posted")
            .fetch_one(pool)
            .await
            .unwrap()
    };
    // The lines as the ledger's postings make them, written as rows before.
    let mut written: Vec<_> = events
        .iter()
        .flat_map(|event| {
            let effects = ledger::postings::effects(event).expect("usage moves the books");
            effects.lines.into_iter().enumerate().map(|(n, line)| {
                (
                    event.id.to_string(),
                    n as i32,
                    event.at.to_rfc3339(),
                    line.book.as_str().to_owned(),
                    line.account.to_string(),
                    line.debit.nanos(),
                    line.credit.nanos(),
                    line.memo,
                )
            })
        })
        .collect();
    let now = journal().await;
    let usage_lines: Vec<_> = now
        .iter()
        .filter(|l| !l.7.starts_with("grant:"))
        .cloned()
        .collect();
    written.sort();
    assert_eq!(
        usage_lines, written,
        "the request rows read as the lines postings make"
    );
    assert_eq!(
        posted().await,
        2,
        "only the grant's lines are written as rows"
    );

    // The books as the previous ledger left them: usage lines as rows.
    sqlx::raw_sql("DROP VIEW journal; ALTER TABLE journal_posted RENAME TO journal;")
        .execute(pool)
        .await
        .unwrap();
    for (event_id, line, at, book, account, debit, credit, memo) in &written {
        sqlx::query(
            "INSERT INTO journal (event_id, line, at, book, account, debit, credit, memo)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event_id)
        .bind(line)
        .bind(at)
        .bind(book)
        .bind(account)
        .bind(debit)
        .bind(credit)
        .bind(memo)
        .execute(pool)
        .await
        .unwrap();
    }
    let migration = backends.store.migration_sql(17).expect("migration 17");
    sqlx::raw_sql(migration).execute(pool).await.unwrap();
    assert_eq!(journal().await, now, "the same lines, each once");
    assert_eq!(posted().await, 2);
    assert_books_match(&backends).await;
    backends.cleanup().await;
}

test_support::on_both!(exactly_once);
test_support::on_both!(a_batch_partly_applied_before_counts_only_its_new_events);
test_support::on_both!(killed_mid_stream);
test_support::on_both!(reconcile_finds_a_corrupted_row);
test_support::on_both!(reconcile_compares_what_the_ledger_has_folded);
test_support::on_both!(lost_usage_shows_as_a_gap);
test_support::on_both!(a_batch_gathers_for_the_linger);
test_support::on_both!(a_batch_is_bounded_in_bytes);
test_support::on_both!(key_totals_follow_days_and_months_in_any_order);
test_support::on_both!(key_spend_rows_migrate_to_one_row_per_key);
test_support::on_both!(a_batch_committed_but_not_published_comes_again);
test_support::on_both!(a_batch_is_acked_only_after_its_states_are_stored);
test_support::on_both!(records_gathered_ahead_come_again_after_a_drop);
test_support::on_both!(a_batch_holds_more_records_on_postgres);
test_support::on_both!(usage_claims_migrate_to_the_request_rows);
test_support::on_both!(usage_lines_migrate_to_their_request_rows);

/// A million small charges through the ledger's postings: the balance is
/// exactly the deposit minus the sum of the charges, with no drift.
#[test]
fn a_million_small_charges_leave_no_rounding_drift() {
    let account = AccountId::new();
    let mut projection = ledger::memory::Projection::default();
    projection.apply(&Envelope::new(Event::CreditsGranted(CreditsGranted {
        account,
        amount: usd("1000"),
        reason: "test".into(),
    })));
    let price = money::PricePerMTok(usd("0.15"));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut exact: i128 = 0;
    for seq in 1..=1_000_000u64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let tokens = 1 + state % 997;
        let cost = money::CostBuilder::default().add(tokens, price).total();
        // 0.15 $/M = 150 nano-dollars a token, exactly.
        assert_eq!(cost.nanos() as u64, tokens * 150);
        exact += i128::from(cost.nanos());
        let envelope = usage(account, seq, cost);
        let effects = ledger::postings::effects(&envelope).expect("usage moves the books");
        projection
            .accounts
            .entry(account.to_string())
            .or_default()
            .balance += effects.balance_delta();
    }
    let balance = projection.accounts[&account.to_string()].balance;
    assert_eq!(i128::from(balance.nanos()), 1_000 * 1_000_000_000 - exact);
}
