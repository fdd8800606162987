//! Provider outages under fault injection: circuit breakers, Retry-After
//! cool-downs, observed latency, and what clients see meanwhile.

use std::time::{Duration, Instant};

use catalog::ProviderId;
use futures_util::{stream, StreamExt};
use gateway::config::{BreakerConfig, LatencyConfig};
use gateway::{GatewayConfig, ProviderSettings};
use serde_json::{json, Value};
use test_support::{Harness, Options};

use crate::{ask, header, read};

/// The model economy-by-quality falls back to when o4-mini is out.
const RUNNER_UP: &str = "openai.gpt-oss-120b-1:0";

/// Economy by quality: o4-mini (OpenAI) leads, gpt-oss-120b (Bedrock) follows.
fn by_quality() -> Value {
    let mut request = ask("economy", "Route me");
    request["prefer"] = json!("quality");
    request
}

async fn with_breakers(breaker: BreakerConfig) -> Harness {
    Harness::start_with(Options {
        gateway: GatewayConfig {
            breaker,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

async fn served_by(h: &Harness, request: &Value) -> String {
    let response = h.chat(request).await;
    assert_eq!(response.status(), 200);
    header(&response, "x-model-router-model")
}

#[tokio::test]
async fn a_hard_down_model_trips_at_the_threshold_and_2000_requests_see_no_failure() {
    let h = with_breakers(BreakerConfig {
        consecutive_failures: 5,
        cooldown_ms: 120_000,
        ..Default::default()
    })
    .await;
    h.fault(json!({"provider": "openai", "model": "o4-mini", "status": 503}))
        .await;
    for n in 1..=5 {
        assert_eq!(served_by(&h, &by_quality()).await, RUNNER_UP);
        let state = h.model_health("o4-mini").await;
        let expected = if n < 5 { "closed" } else { "open" };
        assert_eq!(state["state"], expected, "after {n} failures: {state}");
    }

    let load = stream::iter(0..2_000)
        .map(|_| {
            let h = &h;
            async move {
                let response = h.chat(&by_quality()).await;
                (
                    response.status().as_u16(),
                    header(&response, "x-model-router-model"),
                    header(&response, "x-model-router-attempts"),
                )
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let failed = load.iter().filter(|(status, ..)| *status != 200).count();
    assert_eq!(failed, 0, "client-visible failures");
    assert!(load
        .iter()
        .all(|(_, model, attempts)| model == RUNNER_UP && attempts == "1"));

    let o4 = h.model_health("o4-mini").await;
    assert_eq!(o4["failed"], 5, "no request reached the open model: {o4}");
    assert_eq!(o4["skipped"], 2_000);
    assert_eq!(o4["trips"], 1);
    assert!(o4["open_for_ms"].as_u64().unwrap() > 100_000);
}

#[tokio::test]
async fn without_breakers_every_request_pays_for_the_outage() {
    let h = with_breakers(BreakerConfig {
        enabled: false,
        ..Default::default()
    })
    .await;
    h.fault(json!({"provider": "openai", "model": "o4-mini", "status": 503}))
        .await;
    for _ in 0..20 {
        let response = h.chat(&by_quality()).await;
        assert_eq!(header(&response, "x-model-router-attempts"), "2");
    }
    let o4 = h.model_health("o4-mini").await;
    assert_eq!(
        (o4["state"].as_str(), o4["failed"].as_u64()),
        (Some("closed"), Some(20))
    );
}

#[tokio::test]
async fn a_recovered_model_is_probed_after_a_backed_off_cooldown_then_gets_traffic() {
    let h = with_breakers(BreakerConfig {
        consecutive_failures: 2,
        cooldown_ms: 300,
        max_cooldown_ms: 10_000,
        ..Default::default()
    })
    .await;
    h.fault(json!({"provider": "openai", "model": "o4-mini", "status": 500}))
        .await;
    served_by(&h, &by_quality()).await;
    served_by(&h, &by_quality()).await;
    assert_eq!(h.model_health("o4-mini").await["state"], "open");
    assert_eq!(served_by(&h, &by_quality()).await, RUNNER_UP);

    // Cool-down over, still down: the one probe fails and the cool-down doubles.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(h.model_health("o4-mini").await["state"], "half_open");
    let response = h.chat(&by_quality()).await;
    assert_eq!(
        header(&response, "x-model-router-attempts"),
        "2",
        "probe then fallback"
    );
    let o4 = h.model_health("o4-mini").await;
    assert_eq!(o4["state"], "open");
    assert!(
        o4["open_for_ms"].as_u64().unwrap() > 400,
        "backed off: {o4}"
    );

    // Recovered: after the longer cool-down the probe succeeds and traffic returns.
    h.clear_faults().await;
    tokio::time::sleep(Duration::from_millis(650)).await;
    let response = h.chat(&by_quality()).await;
    assert_eq!(header(&response, "x-model-router-model"), "o4-mini");
    assert_eq!(header(&response, "x-model-router-attempts"), "1");
    assert_eq!(h.model_health("o4-mini").await["state"], "closed");
    assert_eq!(served_by(&h, &by_quality()).await, "o4-mini");
}

#[tokio::test]
async fn a_429_storm_is_left_alone_for_exactly_its_retry_after() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "openai", "model": "o4-mini", "status": 429, "retry_after_s": 1}))
        .await;
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_millis(1_500) {
        assert_eq!(served_by(&h, &by_quality()).await, RUNNER_UP);
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let o4 = h.model_health("o4-mini").await;
    // Asked at 0 s and again once the second was up: two 429s, the rest skipped.
    assert_eq!(o4["rate_limited"], 2, "{o4}");
    assert_eq!(o4["skipped"].as_u64().unwrap() + 2, served);
    assert_eq!(o4["state"], "closed", "a rate limit is not a failure");
    assert!(o4["cooling_down_for_ms"].as_u64().is_some());
}

#[tokio::test]
async fn prefer_fast_leaves_a_slow_model_and_comes_back_when_it_recovers() {
    let h = Harness::start_with(Options {
        gateway: GatewayConfig {
            latency: LatencyConfig {
                ewma_alpha: 0.3,
                decay_half_life_ms: 500,
            },
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut fast = ask("economy", "Quick");
    fast["prefer"] = json!("fast");
    fast["max_tokens"] = json!(16);
    // Catalog: llama3.1-8b 180 ms to first token, then Llama 4 Scout on Groq
    // (Groq) at 200 ms; 16 tokens take under 30 ms on either. The simulator
    // answers about as slowly as the catalog says for Groq, far slower for
    // llama3.1-8b.
    h.fault(json!({"provider": "groq", "model": "meta-llama/llama-4-scout-17b-16e-instruct", "latency_ms": 250}))
        .await;
    h.fault(json!({"provider": "cerebras", "model": "llama3.1-8b", "latency_ms": 1_000}))
        .await;
    assert_eq!(served_by(&h, &fast).await, "llama3.1-8b");
    let slow = h.model_health("llama3.1-8b").await;
    assert!(slow["ttft_ms"].as_f64().unwrap() > 400.0, "{slow}");
    assert_eq!(
        served_by(&h, &fast).await,
        "meta-llama/llama-4-scout-17b-16e-instruct",
        "moved away"
    );

    // Recovered, and unobserved since: its estimate decays back to the catalog's.
    h.fault(json!({"provider": "cerebras", "model": "llama3.1-8b", "latency_ms": 0}))
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(served_by(&h, &fast).await, "llama3.1-8b", "decayed back");
}

#[tokio::test]
async fn connection_failures_across_a_providers_models_trip_the_whole_provider() {
    let mut gateway = GatewayConfig {
        breaker: BreakerConfig {
            consecutive_failures: 4,
            cooldown_ms: 60_000,
            ..Default::default()
        },
        ..Default::default()
    };
    // Nothing listens on port 9 of this host: every connection is refused.
    gateway.providers.insert(
        ProviderId::Groq,
        ProviderSettings {
            base_url: Some("http://127.0.0.1:9/openai/v1".into()),
            ..Default::default()
        },
    );
    let h = Harness::start_with(Options {
        gateway,
        ..Default::default()
    })
    .await;
    for model in [
        "meta-llama/llama-4-scout-17b-16e-instruct",
        "llama-3.3-70b-versatile",
    ]
    .repeat(2)
    {
        let (status, _, body) = read(h.chat(&ask(model, "hi")).await).await;
        assert_eq!(status, 503, "{body}");
        assert!(body["error"]["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("connect"));
    }
    let health = h.health().await;
    let groq = health["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "groq")
        .unwrap();
    assert_eq!(groq["state"], "open", "{health}");
    for model in [
        "meta-llama/llama-4-scout-17b-16e-instruct",
        "llama-3.3-70b-versatile",
    ] {
        assert_eq!(
            h.model_health(model).await["state"],
            "closed",
            "2 failures each"
        );
        let (_, headers, body) = read(h.chat(&ask(model, "hi")).await).await;
        let attempt = &body["error"]["attempts"][0];
        assert_eq!(attempt["skipped"], true, "{body}");
        assert!(attempt["error"].as_str().unwrap().contains("provider groq"));
        assert!(
            headers["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 50
        );
    }
    // Other providers are untouched.
    assert_eq!(
        served_by(&h, &ask("economy", "hi")).await,
        "qwen-3-235b-a22b-instruct-2507"
    );
}

#[tokio::test]
async fn a_refused_provider_key_opens_the_provider_at_once() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "groq", "status": 401})).await;
    let (status, ..) = read(h.chat(&ask("llama-3.3-70b-versatile", "hi")).await).await;
    assert_eq!(
        status, 502,
        "a provider key problem is a bad gateway, not the client's"
    );
    let (_, _, body) = read(
        h.chat(&ask("meta-llama/llama-4-scout-17b-16e-instruct", "hi"))
            .await,
    )
    .await;
    assert_eq!(body["error"]["attempts"][0]["skipped"], true, "{body}");
}

#[tokio::test]
async fn with_every_breaker_open_the_503_is_immediate_and_says_when_to_retry() {
    let h = with_breakers(BreakerConfig {
        consecutive_failures: 1,
        cooldown_ms: 30_000,
        ..Default::default()
    })
    .await;
    for provider in [
        "openai",
        "xai",
        "groq",
        "cerebras",
        "anthropic",
        "google",
        "bedrock",
    ] {
        h.fault(json!({"provider": provider, "status": 502})).await;
    }
    let (status, _, body) = read(h.chat(&ask("economy", "anyone?")).await).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["attempts"].as_array().unwrap().len(), 14);

    let started = Instant::now();
    let (status, headers, body) = read(h.chat(&ask("economy", "anyone?")).await).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(status, 503);
    let attempts = body["error"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 14);
    assert!(attempts
        .iter()
        .all(|a| a["skipped"] == true && a["latency_ms"] == 0));
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "{retry}");
}

#[tokio::test]
async fn a_stream_broken_after_its_first_chunk_counts_against_the_model() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "openai", "model": "o4-mini", "cut_after_chunks": 2}))
        .await;
    let mut request = by_quality();
    request["stream"] = json!(true);
    let body = h.chat(&request).await.text().await.unwrap();
    assert!(body.contains("upstream_stream_error"), "{body}");
    let o4 = h.model_health("o4-mini").await;
    assert_eq!(
        (o4["failed"].as_u64(), o4["consecutive_failures"].as_u64()),
        (Some(1), Some(1))
    );

    h.clear_faults().await;
    let body = h.chat(&request).await.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"));
    let o4 = h.model_health("o4-mini").await;
    assert_eq!(
        (
            o4["succeeded"].as_u64(),
            o4["consecutive_failures"].as_u64()
        ),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn health_needs_a_key_and_metrics_export_the_same_state() {
    let h = with_breakers(BreakerConfig {
        consecutive_failures: 1,
        ..Default::default()
    })
    .await;
    let anonymous = h
        .http
        .get(format!("{}/v1/router/health", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    h.fault(json!({"provider": "openai", "model": "o4-mini", "status": 500}))
        .await;
    served_by(&h, &by_quality()).await;
    let metrics = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&metrics, "content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = metrics.text().await.unwrap();
    for line in [
        "# TYPE modelrouter_breaker_state gauge",
        "modelrouter_breaker_state{provider=\"openai\",model=\"o4-mini\"} 2",
        "modelrouter_breaker_state{provider=\"bedrock\",model=\"openai.gpt-oss-120b-1:0\"} 0",
        "modelrouter_breaker_trips_total{provider=\"openai\",model=\"o4-mini\"} 1",
        "modelrouter_upstream_attempts_total{provider=\"openai\",model=\"o4-mini\",outcome=\"failure\"} 1",
        "modelrouter_upstream_attempts_total{provider=\"bedrock\",model=\"openai.gpt-oss-120b-1:0\",outcome=\"success\"} 1",
        "modelrouter_provider_breaker_state{provider=\"openai\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("modelrouter_ttft_ms{provider=\"cerebras\",model=\"llama3.1-8b\"} 180"));
    let health = h.health().await;
    assert_eq!(health["object"], "router.health");
    assert_eq!(health["breakers_enabled"], true);
}

#[tokio::test]
async fn a_hung_model_is_dropped_once_enough_attempts_stall_not_at_their_timeout() {
    let mut gateway = GatewayConfig {
        breaker: BreakerConfig {
            consecutive_failures: 3,
            stall_factor: 0.01,
            stall_min_ms: 300,
            cooldown_ms: 60_000,
            ..Default::default()
        },
        ..Default::default()
    };
    gateway.providers.insert(
        ProviderId::Openai,
        ProviderSettings {
            first_byte_timeout_ms: 3_000,
            ..Default::default()
        },
    );
    let h = Harness::start_with(Options {
        gateway,
        ..Default::default()
    })
    .await;
    h.fault(json!({"provider": "openai", "model": "o4-mini", "latency_ms": 60_000}))
        .await;
    let mut short = by_quality();
    short["max_tokens"] = json!(16);
    let hung: Vec<_> = (0..3)
        .map(|_| {
            let (http, url, key) = (h.http.clone(), h.url.clone(), h.key.clone());
            let body = short.clone();
            tokio::spawn(async move {
                http.post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| (r.status().as_u16(), header(&r, "x-model-router-attempts")))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.model_health("o4-mini").await["state"], "closed");

    // Three attempts have waited past their patience with no answer: the
    // next request opens the breaker and goes straight to the next candidate.
    let response = h.chat(&short).await;
    assert_eq!(header(&response, "x-model-router-model"), RUNNER_UP);
    assert_eq!(header(&response, "x-model-router-attempts"), "1");
    let o4 = h.model_health("o4-mini").await;
    assert_eq!(
        (o4["state"].as_str(), o4["trips"].as_u64()),
        (Some("open"), Some(1))
    );

    // The stalled ones still fall back when their own timeout strikes.
    for request in hung {
        let (status, attempts) = request.await.unwrap().unwrap();
        assert_eq!((status, attempts.as_str()), (200, "2"));
    }
}
