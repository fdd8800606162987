use std::time::{Duration, Instant};

use catalog::ProviderId;
use gateway::{GatewayConfig, ProviderSettings};
use serde_json::{json, Value};
use test_support::{sse_data, Harness, Options};

use crate::{ask, header};

/// Every provider with short first-byte and idle timeouts.
async fn impatient() -> Harness {
    let mut gateway = GatewayConfig::default();
    for provider in ProviderId::ALL {
        let settings = ProviderSettings {
            first_byte_timeout_ms: 300,
            idle_timeout_ms: 300,
            ..Default::default()
        };
        gateway.providers.insert(provider, settings);
    }
    Harness::start_with(Options {
        gateway,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_slow_first_byte_times_out_and_falls_through() {
    let h = impatient().await;
    h.fault(json!({"provider": "cerebras", "latency_ms": 5_000}))
        .await;
    let mut request = ask("economy", "hi");
    request["prefer"] = json!("cheap");
    let started = Instant::now();
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-model-router-model"),
        "llama-3.3-70b-versatile"
    );
    assert_eq!(header(&response, "x-model-router-attempts"), "2");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up on the slow provider after its first-byte timeout"
    );
}

#[tokio::test]
async fn a_stalled_stream_ends_with_an_error_after_the_idle_timeout() {
    let h = impatient().await;
    h.fault(json!({"provider": "groq", "chunk_delay_ms": 2_000}))
        .await;
    let request = json!({"model": "llama-3.3-70b-versatile", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let started = Instant::now();
    let body = h.chat(&request).await.text().await.unwrap();
    let events = sse_data(&body);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error", "{events:?}");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("idle timeout"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_total_deadline_bounds_the_whole_request() {
    let gateway = GatewayConfig {
        total_timeout_ms: 400,
        ..Default::default()
    };
    let h = Harness::start_with(Options {
        gateway,
        ..Default::default()
    })
    .await;
    h.fault(json!({"provider": "openai", "latency_ms": 5_000}))
        .await;
    let started = Instant::now();
    let response = h.chat(&ask("gpt-4.1", "hi")).await;
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deadline"),
        "{body}"
    );
}
