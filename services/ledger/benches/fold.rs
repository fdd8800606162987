//! How fast the ledger folds usage events, against the floor of one durable
//! write per event on the same database: 50,000 usage events over 500
//! accounts are appended to the log (one event per record, as a gateway
//! at low rates writes them), then timed from the first fold to the last
//! publish, on NATS + PostgreSQL and on the embedded pair. Baseline, in the same
//! run: 5,000 single-row INSERTs, each its own transaction, into the same
//! database. Run with `cargo bench -p ledger --bench fold`
//! (`FOLD_EVENTS` and `FOLD_ACCOUNTS` change the sizes, `FOLD_ONLY=postgres`
//! or `sqlite` runs one backend). It allocates with mimalloc, as the
//! `modelrouter` binary does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{AccountId, CreditsGranted, Envelope, Event};
use ledger::Ledger;
use money::Money;
use test_support::backends::Backends;

/// The allocator the shipped binary folds with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Single-row transactions timed for the floor.
const FLOOR_ROWS: i64 = 5_000;

fn size(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn usage(account: AccountId, seq: u64) -> Envelope {
    test_support::backends::usage_event(account, seq, Money::from_nanos(41_600))
}

async fn fold(name: &str, backends: Backends, events: u64, accounts: u64) {
    let accounts: Vec<AccountId> = (0..accounts).map(|_| AccountId::new()).collect();
    let grants: Vec<Envelope> = accounts
        .iter()
        .map(|&account| {
            Envelope::new(Event::CreditsGranted(CreditsGranted {
                account,
                amount: "1000".parse().unwrap(),
                reason: "bench".into(),
            }))
        })
        .collect();
    backends.append_all(&grants).await;
    let usage: Vec<Envelope> = (1..=events)
        .map(|seq| usage(accounts[(seq % accounts.len() as u64) as usize], seq))
        .collect();
    backends.append_all(&usage).await;
    let total = events + accounts.len() as u64;
    let ledger = Ledger::new(Arc::clone(&backends.log), backends.store.clone())
        .await
        .unwrap();
    let consumer = backends
        .log
        .consumer(ledger::service::CONSUMER)
        .await
        .unwrap();
    // As the running service folds: each batch published while the next folds.
    let mut pipeline = ledger.pipeline(consumer);
    let started = Instant::now();
    let (mut folded, mut batches) = (0, 0u64);
    while folded < total {
        folded += pipeline.step().await.unwrap() as u64;
        batches += 1;
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "ledger stalled"
        );
    }
    pipeline.flush().await.unwrap();
    let fold_rate = total as f64 / started.elapsed().as_secs_f64();

    sqlx::raw_sql("CREATE TABLE bench_floor (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(&backends.store.pool)
        .await
        .unwrap();
    let started = Instant::now();
    for id in 0..FLOOR_ROWS {
        let mut tx = backends.store.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO bench_floor (id, payload) VALUES ($1, $2)")
            .bind(id)
            .bind("x")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let floor_rate = FLOOR_ROWS as f64 / started.elapsed().as_secs_f64();
    println!(
        "{name:<18} ledger folds {fold_rate:>7.0} events/s ({:.0} per batch); one-row-per-transaction floor {floor_rate:>6.0}/s; ratio {:.1}",
        total as f64 / batches as f64,
        fold_rate / floor_rate
    );
    backends.cleanup().await;
}

fn main() {
    let events = size("FOLD_EVENTS", 50_000);
    let accounts = size("FOLD_ACCOUNTS", 500).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("{events} usage events over {accounts} accounts (plus a grant each)");
        let only = std::env::var("FOLD_ONLY").unwrap_or_default();
        if only != "sqlite" {
            let backends = Backends::distributed().await;
            fold("NATS + PostgreSQL", backends, events, accounts).await;
        }
        if only != "postgres" {
            let backends = Backends::embedded().await;
            fold("embedded (SQLite)", backends, events, accounts).await;
        }
    });
}
