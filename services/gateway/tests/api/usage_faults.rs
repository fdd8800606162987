//! Usage under faults: events bigger than the log's records, a log whose
//! server takes only small messages and goes away mid-load, clients that
//! hang up before their answer, requests no provider answers. Every served
//! request must reach the books exactly once, and every numbered request
//! must have its event (no gaps).

use std::time::Duration;

use events::{AccountId, Envelope, Event};
use money::Money;
use serde_json::json;
use test_support::backends::{Backends, OwnNats};
use test_support::{Harness, Options};

use crate::billing::{gateway_on, grant, paid_chat, usd, wait_credit, SETTLE};
use crate::{ask, header};

/// Every usage event in the log, and the largest record's size.
async fn logged_usage(backends: &Backends) -> (Vec<events::UsageRecorded>, usize) {
    let records = backends.log.read(1, 100_000).await.unwrap();
    let largest = records.iter().map(|r| r.payload.len()).max().unwrap_or(0);
    let usage = records
        .iter()
        .flat_map(|r| Envelope::decode_all(&r.payload))
        .filter_map(|e| match e.ok()?.event {
            Event::UsageRecorded(u) => Some(*u),
            _ => None,
        })
        .collect();
    (usage, largest)
}

/// Every usage event's id and request id in the log is a UUIDv7, so the
/// books' indexes on them (request rows, journal lines, the log's dedupe)
/// take each insert at their end; random ids made `up` write about four
/// scattered index pages per request.
async fn assert_time_ordered_ids(backends: &Backends) {
    let records = backends.log.read(1, 100_000).await.unwrap();
    let mut seen = 0;
    for envelope in records
        .iter()
        .flat_map(|r| Envelope::decode_all(&r.payload))
    {
        let envelope = envelope.unwrap();
        let Event::UsageRecorded(usage) = envelope.event else {
            continue;
        };
        let request = uuid::Uuid::parse_str(usage.request_id.trim_start_matches("req_")).unwrap();
        assert_eq!(
            (envelope.id.get_version_num(), request.get_version_num()),
            (7, 7),
            "event {} of request {}",
            envelope.id,
            usage.request_id
        );
        seen += 1;
    }
    assert!(seen > 0, "no usage event in the log");
}

async fn assert_clean(backends: &Backends) {
    let audit = ledger::reconcile::audit(
        &*backends.log,
        &backends.store,
        ledger::reconcile::DEFAULT_GRACE,
    )
    .await
    .unwrap();
    assert!(
        audit.is_clean() && audit.in_flight.is_empty(),
        "reconcile: {audit}"
    );
}

#[tokio::test]
async fn events_larger_than_the_logs_records_are_slimmed_and_every_request_is_billed_once() {
    // A server that takes at most 1,536-byte messages, with events of about
    // 2 KB: three failed attempts each carrying a proxy's HTML error page.
    let mut nats = OwnNats::with_max_payload(1536).await;
    let backends = Backends::distributed_on(&nats.url).await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let mut options = Options {
        account,
        events: Some(backends.gateway_events("gw-big").await),
        ..Default::default()
    };
    options.gateway.breaker.enabled = false;
    let h = Harness::start_with(options).await;
    wait_credit(&h).await;
    let page = format!(
        "<html><head><title>502 Bad Gateway</title></head><body>{}</body></html>",
        "<p>The upstream proxy could not reach the model server.</p>".repeat(40)
    );
    for provider in ["anthropic", "openai", "google"] {
        h.fault(json!({"provider": provider, "status": 502, "body": page}))
            .await;
    }
    // Lowest quality in premium: GLM-5 (Bedrock) answers after the four others failed.
    let premium = |n: usize| {
        json!({"model": "premium", "prefer": "quality",
               "messages": [{"role": "user", "content": format!("Question {n}")}]})
    };
    let mut spent = Money::ZERO;
    let mut served = 0;
    for n in 0..150 {
        if n == 50 {
            nats.stop();
        }
        if n == 100 {
            nats.restart().await;
        }
        let response = h.chat(&premium(n)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-model-router-provider"), "bedrock");
        assert_eq!(header(&response, "x-model-router-attempts"), "5");
        spent += header(&response, "x-model-router-cost")
            .parse::<Money>()
            .unwrap();
        served += 1;
    }
    assert_eq!(backends.wait_usage(served, SETTLE).await, served);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        backends.usage_applied().await,
        served,
        "billed exactly once"
    );
    assert_eq!(backends.balance(account).await, Some(usd("10") - spent));
    let publisher = &h.gateway.events.as_ref().unwrap().publisher;
    assert_eq!(publisher.pending(), 0);
    assert_eq!(publisher.set_aside(), 0);
    let (usage, largest) = logged_usage(&backends).await;
    assert!(largest <= 1536, "a record of {largest} bytes");
    // Slimmed: the error texts were cut, the bill kept.
    assert!(usage
        .iter()
        .all(|u| u.cost > Money::ZERO && u.tokens.input > 0));
    assert!(usage
        .iter()
        .all(|u| u.attempts.iter().all(|a| a.error.chars().count() <= 41)));
    assert_clean(&backends).await;
    ledger.abort();
    backends.cleanup().await;
}

#[tokio::test]
async fn clients_that_hang_up_before_the_answer_are_billed_for_it() {
    let backends = Backends::distributed().await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let h = gateway_on(&backends, account, "gw-a").await;
    wait_credit(&h).await;
    h.fault(json!({"provider": "openai", "model": "gpt-4.1", "latency_ms": 1500}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    for n in 0..7 {
        let mut request = ask("gpt-4.1", &format!("A question I will not wait for ({n})"));
        // Two of them streams, which leave before the first chunk.
        request["stream"] = json!(n >= 5);
        let sent = impatient
            .post(format!("{}/v1/chat/completions", h.url))
            .bearer_auth(&h.key)
            .json(&request)
            .send()
            .await;
        assert!(sent.is_err(), "the client gave up before the answer");
    }
    assert_eq!(backends.wait_usage(7, SETTLE).await, 7);
    let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT outcome, output_tokens, cost, request_id FROM requests ORDER BY origin_seq",
    )
    .fetch_all(&backends.store.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 7, "{rows:?}");
    for (n, (outcome, output, cost, _)) in rows.iter().enumerate() {
        assert_eq!(outcome, "client_disconnected");
        assert!(*cost > 0, "{rows:?}");
        // A whole answer is billed in full; a stream that nobody read is
        // closed at its first chunk (the provider stops generating) and
        // billed for its prompt and what had come.
        if n < 5 {
            assert!(*output > 0, "{rows:?}");
        }
    }
    assert_eq!(
        h.upstream_requests()
            .await
            .iter()
            .filter(|r| r["body"]["model"] == "gpt-4.1")
            .count(),
        7,
        "every provider call was made and billed"
    );
    assert_clean(&backends).await;
    ledger.abort();
    backends.cleanup().await;
}

#[tokio::test]
async fn requests_no_provider_answered_are_recorded_so_the_sequence_has_no_gaps() {
    let backends = Backends::distributed().await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let h = gateway_on(&backends, account, "gw-a").await;
    wait_credit(&h).await;
    h.fault(json!({"provider": "openai", "model": "gpt-4.1", "status": 503, "times": 1}))
        .await;
    let failed = h.chat(&ask("gpt-4.1", "one")).await;
    assert_eq!(failed.status(), 503);
    h.fault(json!({"provider": "openai", "model": "gpt-4.1", "status": 400, "times": 1}))
        .await;
    let rejected = h.chat(&ask("gpt-4.1", "two")).await;
    assert_eq!(rejected.status(), 400);
    let spent = paid_chat(&h, 3).await;
    assert_eq!(backends.wait_usage(3, SETTLE).await, 3);
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT outcome, cost, origin_seq FROM requests ORDER BY origin_seq")
            .fetch_all(&backends.store.pool)
            .await
            .unwrap();
    let outcomes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(outcomes, ["failed", "failed", "completed"]);
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), [1, 2, 3]);
    assert_time_ordered_ids(&backends).await;
    let (requests, spent_today): (i64, i64) =
        sqlx::query_as("SELECT requests, spent FROM day_spend WHERE account = $1")
            .bind(account.to_string())
            .fetch_one(&backends.store.pool)
            .await
            .unwrap();
    assert_eq!((requests, Money::from_nanos(spent_today)), (1, spent));
    assert_eq!(backends.balance(account).await, Some(usd("10") - spent));
    assert_clean(&backends).await;
    ledger.abort();
    backends.cleanup().await;
}

/// Complete lines in the `.wal` segments of gateway `id`'s journal.
fn journal_lines(backends: &Backends, id: &str) -> usize {
    let dir = backends.dir.0.join("usage").join(id);
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            bytes.iter().filter(|&&b| b == b'\n').count()
        })
        .sum()
}

#[tokio::test]
async fn a_clean_stop_leaves_no_sent_usage_in_the_journal() {
    let backends = Backends::embedded().await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let h = gateway_on(&backends, account, "gw-stop").await;
    wait_credit(&h).await;
    for n in 0..5 {
        paid_chat(&h, n).await;
    }
    let events = h.gateway.events.as_ref().expect("events");
    events.publisher.flush().await;
    assert_eq!(events.publisher.pending(), 0);
    assert_eq!(
        journal_lines(&backends, "gw-stop"),
        5,
        "sent, still in the open segment"
    );
    h.gateway.drain(Duration::from_secs(5)).await;
    events.publisher.shutdown().await;
    // What is left would be counted by `reconcile` as usage not in the log.
    assert_eq!(journal_lines(&backends, "gw-stop"), 0);
    ledger.abort();
    backends.cleanup().await;
}

/// A publisher gathering for a minute still sends once the journal holds
/// `FILLED_BYTES` it has not sent: at a rate that fills it, a longer wait
/// only adds lag (and `up` gathers for 100 ms).
#[tokio::test]
async fn a_filled_journal_is_sent_without_waiting_out_the_linger() {
    use gateway::usage::journal::FILLED_BYTES;
    let backends = Backends::embedded().await;
    let publisher = gateway::usage::Publisher::start(
        std::sync::Arc::clone(&backends.log),
        &backends.dir.0,
        Some("gw-fill"),
        Duration::from_secs(60),
    )
    .expect("usage journal");
    let account = AccountId::new();
    let (mut bytes, mut written) = (0, 0);
    while bytes < FILLED_BYTES {
        written += 1;
        let envelope = test_support::backends::usage_event(account, written, Money::from_nanos(1));
        bytes += envelope.encode().len() + 1;
        publisher.record(&envelope);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (usage, _) = logged_usage(&backends).await;
        if usage.len() as u64 == written {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {written} events in the log after 30 s of a 60 s linger",
            usage.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publisher.shutdown().await;
    backends.cleanup().await;
}
