//! How fast the ledger folds usage events, against the floor of one durable
//! write per event on the same database: 5,000 usage events are appended to
//! the log, then timed from the first fold to the last, on NATS +
//! PostgreSQL and on the embedded pair. Baseline, in the same run: the same
//! number of single-row INSERTs, each its own transaction, into the same
//! database. Run with `cargo bench -p ledger --bench fold`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{AccountId, CreditsGranted, Envelope, Event};
use ledger::Ledger;
use money::Money;
use test_support::backends::Backends;

const EVENTS: u64 = 5_000;

fn usage(account: AccountId, seq: u64) -> Envelope {
    test_support::backends::usage_event(account, seq, Money::from_nanos(41_600))
}

async fn fold(name: &str, backends: Backends) {
    let accounts: Vec<AccountId> = (0..50).map(|_| AccountId::new()).collect();
    for &account in &accounts {
        backends
            .publish(Event::CreditsGranted(CreditsGranted {
                account,
                amount: "1000".parse().unwrap(),
                reason: "bench".into(),
            }))
            .await;
    }
    for seq in 1..=EVENTS {
        let envelope = usage(accounts[(seq % 50) as usize], seq);
        backends
            .log
            .append(
                envelope.event.subject(),
                &envelope.id.to_string(),
                &envelope.encode(),
            )
            .await
            .unwrap();
    }
    let total = EVENTS + accounts.len() as u64;
    let ledger = Ledger::new(Arc::clone(&backends.log), backends.store.clone())
        .await
        .unwrap();
    let mut consumer = backends
        .log
        .consumer(ledger::service::CONSUMER)
        .await
        .unwrap();
    let started = Instant::now();
    let mut folded = 0;
    while folded < total {
        folded += ledger.step(consumer.as_mut()).await.unwrap() as u64;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "ledger stalled"
        );
    }
    let fold_rate = total as f64 / started.elapsed().as_secs_f64();

    sqlx::raw_sql("CREATE TABLE bench_floor (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(&backends.store.pool)
        .await
        .unwrap();
    let started = Instant::now();
    for id in 0..total as i64 {
        let mut tx = backends.store.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO bench_floor (id, payload) VALUES ($1, $2)")
            .bind(id)
            .bind("x")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let floor_rate = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "{name:<22} ledger folds {fold_rate:>7.0} events/s; one-row-per-transaction floor {floor_rate:>7.0}/s; ratio {:.2}",
        fold_rate / floor_rate
    );
    backends.cleanup().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("{EVENTS} usage events over 50 accounts (plus 50 grants)");
        fold("NATS + PostgreSQL", Backends::distributed().await).await;
        fold("embedded (SQLite)", Backends::embedded().await).await;
    });
}
