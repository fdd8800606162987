use serde_json::json;
use test_support::{Harness, Options};

use crate::{ask, header, read};

async fn routed(h: &Harness, tier: &str, prefer: &str) -> String {
    let mut request = ask(tier, "Route me");
    request["prefer"] = json!(prefer);
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200, "{tier}/{prefer}");
    header(&response, "x-model-router-model")
}

/// With every provider configured (OpenAI, xAI, Groq, Cerebras, Anthropic, Google, Bedrock), the
/// leaders follow from the catalog by the rules in `prefer.rs`:
/// cheap = free first, then blended price; fast = ttft + 256 tokens at catalog speed;
/// quality / coding = scores; balanced = 0.5 quality + 0.3 cheapness + 0.2 speed.
#[tokio::test]
async fn each_prefer_picks_its_leader_in_each_tier() {
    let h = Harness::start().await;
    let table = [
        ("economy", "cheap", "qwen-3-235b-a22b-instruct-2507"),
        ("economy", "fast", "llama3.1-8b"),
        ("economy", "quality", "o4-mini"),
        ("economy", "coding", "claude-haiku-4-5"),
        ("economy", "balanced", "qwen-3-235b-a22b-instruct-2507"),
        (
            "standard",
            "cheap",
            "us.meta.llama4-scout-17b-instruct-v1:0",
        ),
        ("standard", "fast", "us.meta.llama4-scout-17b-instruct-v1:0"),
        ("standard", "quality", "gpt-5.3-codex"),
        ("standard", "coding", "gpt-5.3-codex"),
        ("standard", "balanced", "qwen.qwen3-next-80b-a3b"),
        ("premium", "cheap", "zai.glm-5"),
        ("premium", "quality", "claude-opus-4-7"),
        ("premium", "coding", "claude-opus-4-7"),
    ];
    for (tier, prefer, expected) in table {
        assert_eq!(routed(&h, tier, prefer).await, expected, "{tier}/{prefer}");
    }
    // `balanced` is the default.
    assert_eq!(
        header(
            &h.chat(&ask("economy", "Route me")).await,
            "x-model-router-model"
        ),
        "qwen-3-235b-a22b-instruct-2507"
    );
}

#[tokio::test]
async fn retryable_failures_fall_through_in_prefer_order() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "openai", "status": 503})).await;
    let mut request = ask("economy", "Route me");
    request["prefer"] = json!("quality");
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200);
    // Quality order: o4-mini (59, OpenAI, down) → gpt-oss-120b (58, Bedrock).
    assert_eq!(
        header(&response, "x-model-router-model"),
        "openai.gpt-oss-120b-1:0"
    );
    assert_eq!(header(&response, "x-model-router-attempts"), "2");

    h.fault(json!({"provider": "bedrock", "status": 429, "retry_after_s": 1}))
        .await;
    let response = h.chat(&request).await;
    // Next by quality after o4-mini (59) and gpt-oss-120b (58), both down: grok-3-mini (57).
    assert_eq!(
        header(&response, "x-model-router-model"),
        "grok-3-mini-beta"
    );
    assert_eq!(header(&response, "x-model-router-attempts"), "3");
}

#[tokio::test]
async fn pinning_bypasses_tier_logic() {
    let h = Harness::start().await;
    let mut request = ask("o3", "Pinned");
    request["prefer"] = json!("cheap");
    let response = h.chat(&request).await;
    assert_eq!(header(&response, "x-model-router-model"), "o3");
    // A pinned model that is down is not replaced by another model.
    h.fault(json!({"provider": "openai", "model": "o3", "status": 500}))
        .await;
    let (status, _, body) = read(h.chat(&ask("o3", "Pinned")).await).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn provider_rejections_are_not_retried_elsewhere() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "cerebras", "status": 400}))
        .await;
    let mut request = ask("economy", "Bad for everyone");
    request["prefer"] = json!("cheap");
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "upstream_rejected");
    assert_eq!(
        h.upstream_requests().await.len(),
        1,
        "a 400 would fail everywhere, so nothing else is tried"
    );
}

#[tokio::test]
async fn a_model_unknown_to_its_provider_falls_through() {
    let h = Harness::start().await;
    h.fault(
        json!({"provider": "cerebras", "model": "qwen-3-235b-a22b-instruct-2507", "status": 404}),
    )
    .await;
    let mut request = ask("economy", "hi");
    request["prefer"] = json!("cheap");
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-model-router-model"),
        "llama-3.3-70b-versatile"
    );
}

#[tokio::test]
async fn every_candidate_down_is_503_listing_the_attempts() {
    let h = Harness::start().await;
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
    let (status, headers, body) = read(h.chat(&ask("economy", "anyone?")).await).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(body["error"]["code"], "all_candidates_failed");
    let attempts = body["error"]["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        14,
        "every available economy model was tried once"
    );
    for attempt in attempts {
        assert_eq!(attempt["status"], 502);
        assert!(
            attempt["provider"].is_string()
                && attempt["model"].is_string()
                && attempt["latency_ms"].is_u64()
        );
    }
}

#[tokio::test]
async fn every_candidate_rate_limited_is_429_with_retry_after() {
    let h = Harness::start().await;
    for (provider, wait) in [
        ("openai", 9),
        ("xai", 4),
        ("groq", 30),
        ("cerebras", 12),
        ("anthropic", 7),
        ("google", 6),
        ("bedrock", 8),
    ] {
        h.fault(json!({"provider": provider, "status": 429, "retry_after_s": wait}))
            .await;
    }
    let (status, headers, body) = read(h.chat(&ask("economy", "hi")).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        headers["retry-after"], "4",
        "the soonest any candidate will take requests again"
    );
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn fields_a_model_cannot_carry_are_refused_by_name_or_routed_around() {
    let h = Harness::start().await;
    let mut request = ask("llama-3.3-70b-versatile", "two please");
    request["n"] = json!(2);
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("n")));

    let mut request = ask("o3", "warm");
    request["temperature"] = json!(0.2);
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("temperature"))
    );

    // In a tier, models that cannot carry `n = 2` are skipped instead.
    let mut request = ask("economy", "two please");
    request["n"] = json!(2);
    request["prefer"] = json!("cheap");
    let (status, headers, body) = read(h.chat(&request).await).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-model-router-model"], "grok-3-mini-beta");
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unconfigured_providers_are_skipped() {
    let h = Harness::start_with(Options {
        without: vec![catalog::ProviderId::Groq, catalog::ProviderId::Cerebras],
        ..Default::default()
    })
    .await;
    let mut request = ask("economy", "hi");
    request["prefer"] = json!("cheap");
    let response = h.chat(&request).await;
    // Without the free providers, the cheapest economy model: Bedrock's Nemotron Nano 9B ($0.06 / $0.23).
    assert_eq!(
        header(&response, "x-model-router-model"),
        "nvidia.nemotron-nano-9b-v2"
    );
    let (status, _, body) = read(h.chat(&ask("qwen-3-235b-a22b-instruct-2507", "hi")).await).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "no_provider_available");
}

/// OpenRouter's `models`: tried in order after `model`, with the same
/// fallback rules; a tier in the list contributes its models in `prefer`
/// order; the list never reaches the provider.
#[tokio::test]
async fn a_models_fallback_list_is_tried_in_order() {
    let h = Harness::start().await;
    let body = json!({
        "models": ["gpt-4.1", "claude-sonnet-4-6", "standard"],
        "messages": [{"role": "user", "content": "Fall back"}]
    });
    let response = h.chat(&body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-model-router-model"), "gpt-4.1");
    let sent = h.upstream_requests().await;
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|r| r["body"].get("models").is_none()));

    h.fault(json!({"provider": "openai", "model": "gpt-4.1", "status": 500}))
        .await;
    let response = h.chat(&body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-model-router-model"),
        "claude-sonnet-4-6"
    );
    assert_eq!(header(&response, "x-model-router-attempts"), "2");

    h.fault(json!({"provider": "anthropic", "status": 503}))
        .await;
    let response = h.chat(&body).await;
    assert_eq!(response.status(), 200, "the standard tier comes last");
    let served = header(&response, "x-model-router-model");
    assert!(
        !["gpt-4.1", "claude-sonnet-4-6"].contains(&served.as_str()),
        "{served}"
    );

    // `model` comes first, then the list; a model named twice is tried once.
    h.clear_faults().await;
    let response = h
        .chat(&json!({
            "model": "o3", "models": ["o3", "gpt-4.1"],
            "messages": [{"role": "user", "content": "x"}]
        }))
        .await;
    assert_eq!(header(&response, "x-model-router-model"), "o3");
    h.fault(json!({"provider": "openai", "model": "o3", "status": 500}))
        .await;
    let (status, _, body) = read(
        h.chat(&json!({
            "model": "o3", "models": ["o3"],
            "messages": [{"role": "user", "content": "x"}]
        }))
        .await,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_models_list_is_refused_by_name() {
    let h = Harness::start().await;
    let chat = |extra: serde_json::Value| {
        let mut body = json!({"messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let (status, _, body) = read(
        h.chat(&chat(json!({"models": ["gpt-4.1", "no-such-model"]})))
            .await,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-model"));
    for (extra, param) in [
        (json!({}), "model"),
        (json!({"models": []}), "model"),
        (json!({"models": ["gpt-4.1", ""]}), "models"),
        (
            json!({"models": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}),
            "models",
        ),
    ] {
        let (status, _, body) = read(h.chat(&chat(extra.clone())).await).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"]["param"], param, "{extra}: {body}");
    }
    let (status, _, body) = read(h.chat(&chat(json!({"models": "gpt-4.1"}))).await).await;
    assert_eq!(status, 400, "{body}");
}
