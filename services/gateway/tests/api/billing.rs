//! The gateway on the event backbone with a ledger folding its usage:
//! usage reaches the books exactly once (through an event-log outage too),
//! credit and daily limits are enforced, streams cut by the client are
//! billed.

use std::time::Duration;

use events::{AccountId, CreditsGranted, DailyLimitSet, Event};
use money::Money;
use serde_json::{json, Value};
use test_support::backends::{Backends, OwnNats};
use test_support::{sse_data, Harness, Options};

use crate::{ask, header, read};

pub(crate) const SETTLE: Duration = Duration::from_secs(60);

pub(crate) fn usd(s: &str) -> Money {
    s.parse().unwrap()
}

pub(crate) async fn gateway_on(backends: &Backends, account: AccountId, id: &str) -> Harness {
    Harness::start_with(Options {
        account,
        events: Some(backends.gateway_events(id).await),
        ..Default::default()
    })
    .await
}

pub(crate) async fn grant(backends: &Backends, account: AccountId, amount: &str) {
    backends
        .publish(Event::CreditsGranted(CreditsGranted {
            account,
            amount: usd(amount),
            reason: "test".into(),
        }))
        .await;
}

/// Waits until the gateway sees credit on the account.
pub(crate) async fn wait_credit(h: &Harness) {
    let events = h.gateway.events.as_ref().expect("events");
    for _ in 0..1_000 {
        if events
            .accounts
            .allowance(h.account, chrono::Utc::now())
            .is_ok_and(|a| a.paid)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the ledger's account state never reached the gateway");
}

/// A paid chat request (gpt-4.1: tiers hold free models too); its cost from the header.
pub(crate) async fn paid_chat(h: &Harness, n: usize) -> Money {
    let response = h
        .chat(&ask("gpt-4.1", &format!("Question {n} about routers")))
        .await;
    assert_eq!(response.status(), 200);
    let cost: Money = header(&response, "x-model-router-cost").parse().unwrap();
    assert!(cost > Money::ZERO);
    cost
}

/// A streamed request; its cost from the final usage chunk.
async fn streamed_chat(h: &Harness) -> Money {
    let mut request = ask("gpt-4.1", "Stream me something");
    request["stream"] = json!(true);
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let usage = sse_data(&body)
        .into_iter()
        .filter(|d| d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk");
    usage["usage"]["cost"].as_str().unwrap().parse().unwrap()
}

async fn every_request_is_billed_once(backends: Backends) {
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let h = gateway_on(&backends, account, "gw-a").await;
    wait_credit(&h).await;
    let mut spent = Money::ZERO;
    for n in 0..5 {
        spent += paid_chat(&h, n).await;
    }
    for _ in 0..2 {
        spent += streamed_chat(&h).await;
    }
    let response = h
        .embed(&json!({"model": "embed-small", "input": ["a", "b"]}))
        .await;
    spent += header(&response, "x-model-router-cost")
        .parse::<Money>()
        .unwrap();
    // A free model: recorded, costs nothing.
    let free = h.chat(&ask("llama3.1-8b", "free please")).await;
    assert_eq!(header(&free, "x-model-router-cost"), "0");
    assert_eq!(backends.wait_usage(9, SETTLE).await, 9);
    assert_eq!(backends.balance(account).await, Some(usd("10") - spent));
    let differences = ledger::reconcile::reconcile(&*backends.log, &backends.store)
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT model, input_tokens, output_tokens FROM requests ORDER BY at")
            .fetch_all(&backends.store.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 9);
    assert!(rows.iter().all(|(_, input, _)| *input > 0));
    ledger.abort();
    backends.cleanup().await;
}

mod every_request_is_billed_once {
    #[tokio::test]
    async fn on_nats_and_postgres() {
        super::every_request_is_billed_once(super::Backends::distributed().await).await;
    }

    #[tokio::test]
    async fn embedded() {
        super::every_request_is_billed_once(super::Backends::embedded().await).await;
    }
}

#[tokio::test]
async fn without_credit_only_free_models_serve_and_the_rest_is_402() {
    let backends = Backends::embedded().await;
    let ledger = backends.spawn_ledger().await;
    let h = gateway_on(&backends, AccountId::new(), "gw-a").await;
    let response = h.chat(&ask("economy", "Anything free?")).await;
    assert_eq!(response.status(), 200);
    let provider = header(&response, "x-model-router-provider");
    assert!(provider == "groq" || provider == "cerebras", "{provider}");
    let (status, _, body) = read(h.chat(&ask("premium", "Think hard")).await).await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["code"], "insufficient_credits");
    let (status, _, body) = read(
        h.embed(&json!({"model": "embed-small", "input": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, 402, "{body}");
    ledger.abort();
    backends.cleanup().await;
}

#[tokio::test]
async fn the_daily_limit_refuses_until_midnight_counting_unapplied_spend() {
    let backends = Backends::embedded().await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    // The limit goes first: the ledger folds in order, so the account state
    // that shows the credit (what `wait_credit` waits for) has the limit too.
    backends
        .publish(Event::DailyLimitSet(DailyLimitSet {
            account,
            limit: Some(usd("0.000001")),
        }))
        .await;
    grant(&backends, account, "10").await;
    let h = gateway_on(&backends, account, "gw-a").await;
    wait_credit(&h).await;
    // Nothing spent yet: served. Its cost alone passes the limit.
    paid_chat(&h, 0).await;
    // Refused at once, before the ledger has even applied the first request.
    let response = h.chat(&ask("gpt-4.1", "One more")).await;
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    let (status, _, body) = read(response).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "daily_limit_exceeded");
    assert!((1..=86_400).contains(&retry_after));
    // Free models are refused too: the limit is on the account.
    assert_eq!(h.chat(&ask("llama3.1-8b", "free?")).await.status(), 429);
    ledger.abort();
    backends.cleanup().await;
}

#[tokio::test]
async fn usage_survives_the_event_log_going_down_mid_load() {
    let mut nats = OwnNats::start().await;
    let backends = Backends::distributed_on(&nats.url).await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let h = gateway_on(&backends, account, "gw-a").await;
    wait_credit(&h).await;
    let mut spent = Money::ZERO;
    let mut served = 0;
    for n in 0..60 {
        if n == 20 {
            nats.stop();
        }
        if n == 40 {
            nats.restart().await;
        }
        spent += paid_chat(&h, n).await;
        served += 1;
    }
    let publisher = &h.gateway.events.as_ref().unwrap().publisher;
    publisher.flush().await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while publisher.pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(publisher.pending(), 0, "the journal never drained");
    assert_eq!(backends.wait_usage(served, SETTLE).await, served);
    // Nothing more arrives: exactly one entry per request served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backends.usage_applied().await, served);
    assert_eq!(backends.balance(account).await, Some(usd("10") - spent));
    let differences = ledger::reconcile::reconcile(&*backends.log, &backends.store)
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
    ledger.abort();
    backends.cleanup().await;
}

#[tokio::test]
async fn two_gateways_share_one_accounts_daily_limit() {
    let backends = Backends::distributed().await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let limit = usd("0.01");
    backends
        .publish(Event::DailyLimitSet(DailyLimitSet {
            account,
            limit: Some(limit),
        }))
        .await;
    let a = gateway_on(&backends, account, "gw-a").await;
    let b = gateway_on(&backends, account, "gw-b").await;
    wait_credit(&a).await;
    wait_credit(&b).await;
    // Both gateways send until refused; bounded, so a missing limit fails the test.
    async fn until_refused(h: &Harness) -> (Money, usize, Money) {
        let (mut spent, mut largest) = (Money::ZERO, Money::ZERO);
        for n in 0..2_000 {
            let response = h.chat(&ask("gpt-4.1", &format!("Limit test {n}"))).await;
            match response.status().as_u16() {
                200 => {
                    let cost: Money = header(&response, "x-model-router-cost").parse().unwrap();
                    spent += cost;
                    largest = largest.max(cost);
                }
                429 => return (spent, n, largest),
                other => panic!("unexpected status {other}"),
            }
        }
        panic!("never refused after 2,000 requests");
    }
    let ((spent_a, served_a, largest_a), (spent_b, served_b, largest_b)) =
        tokio::join!(until_refused(&a), until_refused(&b));
    let total = spent_a + spent_b;
    let served = (served_a + served_b) as i64;
    assert_eq!(backends.wait_usage(served, SETTLE).await, served);
    let overshoot = total - limit;
    eprintln!(
        "daily limit {limit}: served {served} requests for {total} by two gateways; overshoot {overshoot} ({:.1}% of the limit, {:.1} requests)",
        overshoot.nanos() as f64 * 100.0 / limit.nanos() as f64,
        overshoot.nanos() as f64 / (total.nanos() as f64 / served as f64),
    );
    assert!(total >= limit, "refused before the limit was reached");
    // The guarantee: a gateway's own spend never passes the limit by more
    // than its last request; the overshoot is what the other served unseen.
    assert!(
        spent_a <= limit + largest_a,
        "gateway a alone spent {spent_a}"
    );
    assert!(
        spent_b <= limit + largest_b,
        "gateway b alone spent {spent_b}"
    );
    ledger.abort();
    backends.cleanup().await;
}
