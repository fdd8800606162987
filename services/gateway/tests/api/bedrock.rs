//! Bedrock behind the OpenAI endpoint: SigV4-signed Converse requests (the
//! simulator verifies every signature), what goes out and what comes back.

use catalog::ProviderId;
use gateway::{GatewayConfig, ProviderSettings};
use serde_json::{json, Value};
use test_support::{sse_data, Harness, Options};

use crate::{header, read, request_with, sent_to, usd, weather_tool};

/// Llama 4 Scout, through its cross-region inference profile.
const MODEL: &str = "us.meta.llama4-scout-17b-instruct-v1:0";

async fn sent(h: &Harness) -> Value {
    sent_to(h, "bedrock").await
}

fn chat_with(fields: Value) -> Value {
    request_with(MODEL, fields)
}

#[tokio::test]
async fn system_turns_and_inference_config_go_out_as_converse_expects() {
    let h = Harness::start().await;
    let (status, headers, body) = read(
        h.chat(&json!({"model": MODEL, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell me"},
            {"role": "user", "content": "about routers"}
        ], "temperature": 0.4, "top_p": 0.8, "stop": ["\n\n"], "seed": 3, "user": "u"}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-model-router-provider"], "bedrock");
    assert_eq!(body["model"], MODEL);
    let out = sent(&h).await;
    assert_eq!(out["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [{"text": "Hi"}]},
            {"role": "assistant", "content": [{"text": "Hello!"}]},
            {"role": "user", "content": [{"text": "Tell me"}, {"text": "about routers"}]}
        ])
    );
    assert_eq!(
        out["inferenceConfig"],
        json!({"maxTokens": 8192, "temperature": 0.4, "topP": 0.8, "stopSequences": ["\n\n"]})
    );
}

#[tokio::test]
async fn images_become_image_blocks_and_urls_are_refused() {
    let h = Harness::start().await;
    let image = |url: &str| {
        chat_with(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}]}))
    };
    assert_eq!(
        h.chat(&image("data:image/png;base64,iVBORw0KGgo="))
            .await
            .status(),
        200
    );
    assert_eq!(
        sent(&h).await["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
    );
    let (status, _, body) = read(h.chat(&image("https://example.com/cat.png")).await).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages"))
    );
}

#[tokio::test]
async fn tool_use_round_trips() {
    let h = Harness::start().await;
    let ask = json!({"role": "user", "content": "Weather in Oslo?"});
    let (_, _, first) = read(
        h.chat(&chat_with(
            json!({"messages": [ask], "tools": weather_tool(), "tool_choice": "required"}),
        ))
        .await,
    )
    .await;
    assert_eq!(
        sent(&h).await["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    let choice = &first["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{first}");
    let call = &choice["message"]["tool_calls"][0];
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    let follow_up = chat_with(json!({"tools": weather_tool(), "messages": [
        ask, choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "4 degrees, rain"}
    ]}));
    let (status, _, second) = read(h.chat(&follow_up).await).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["choices"][0]["finish_reason"], "stop");
    let out = sent(&h).await;
    assert_eq!(
        out["messages"][1]["content"][0],
        json!({"toolUse": {"toolUseId": call["id"], "name": "get_weather", "input": arguments}})
    );
    assert_eq!(
        out["messages"][2]["content"][0],
        json!({"toolResult": {"toolUseId": call["id"], "content": [{"text": "4 degrees, rain"}]}})
    );
}

#[tokio::test]
async fn stop_reasons_map() {
    let h = Harness::start().await;
    for (fields, expected) in [
        (json!({}), "stop"),
        (json!({"stop": ["router"]}), "stop"),
        (json!({"max_tokens": 3}), "length"),
        (json!({"tools": weather_tool()}), "tool_calls"),
    ] {
        let (_, _, body) = read(h.chat(&chat_with(fields.clone())).await).await;
        assert_eq!(body["choices"][0]["finish_reason"], expected, "{fields}");
    }
}

#[tokio::test]
async fn usage_and_cost_are_exact_whole_and_streamed() {
    let h = Harness::start().await;
    let (_, headers, body) = read(h.chat(&chat_with(json!({}))).await).await;
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    // Llama 4 Scout: $0.17 / $0.66 per million = 170 / 660 nano-dollars per token.
    assert_eq!(
        headers["x-model-router-cost"],
        usd(prompt, completion, 170, 660).as_str()
    );
    let text = h
        .chat(&chat_with(json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, body["choices"][0]["message"]["content"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["completion_tokens"], completion);
    assert_eq!(last["usage"]["cost"], usd(prompt, completion, 170, 660));
}

#[tokio::test]
async fn streamed_tool_input_arrives_as_argument_deltas() {
    let h = Harness::start().await;
    let text = h
        .chat(&chat_with(
            json!({"stream": true, "tools": weather_tool(), "tool_choice": "required"}),
        ))
        .await
        .text()
        .await
        .unwrap();
    let calls: Vec<Value> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls").cloned())
        .collect();
    assert!(calls.len() > 2);
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    let arguments: String = calls
        .iter()
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert!(serde_json::from_str::<Value>(&arguments).unwrap()["city"].is_string());
}

#[tokio::test]
async fn errors_map_and_retry_where_they_should() {
    let h = Harness::start().await;
    let pinned = chat_with(json!({}));
    h.fault(json!({"provider": "bedrock", "status": 400, "times": 1}))
        .await;
    let (status, _, body) = read(h.chat(&pinned).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("upstream_rejected"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rejected by the simulated provider"));
    h.fault(json!({"provider": "bedrock", "status": 503, "times": 1}))
        .await;
    let (status, _, body) = read(h.chat(&pinned).await).await;
    assert_eq!(
        (status, body["error"]["attempts"][0]["status"].as_u64()),
        (503, Some(503))
    );
    h.fault(json!({"provider": "bedrock", "status": 429, "retry_after_s": 4, "times": 1}))
        .await;
    let (status, headers, _) = read(h.chat(&pinned).await).await;
    assert_eq!(
        (status, headers["retry-after"].to_str().unwrap()),
        (429, "4")
    );
}

#[tokio::test]
async fn a_corrupt_frame_is_an_error_never_output() {
    let h = Harness::start().await;
    let stream = chat_with(json!({"stream": true}));
    // Before the first chunk: the attempt fails (and, pinned, nothing else is tried).
    h.fault(json!({"provider": "bedrock", "corrupt_frame": 0, "times": 1}))
        .await;
    let (status, _, body) = read(h.chat(&stream).await).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("corrupt event-stream frame"));
    // After it: the text so far, then an error event; nothing from the bad frame.
    h.fault(json!({"provider": "bedrock", "corrupt_frame": 3, "times": 1}))
        .await;
    let text = h.chat(&stream).await.text().await.unwrap();
    let events = sse_data(&text);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error", "{text}");
    let content: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"].get("content").cloned())
        .collect();
    assert_eq!(
        content.len(),
        3,
        "role chunk and the two good deltas: {text}"
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_the_signature_check_and_opens_the_provider() {
    let mut gateway = GatewayConfig::default();
    gateway.providers.insert(
        ProviderId::Bedrock,
        ProviderSettings {
            api_key: Some("not-the-secret".into()),
            ..Default::default()
        },
    );
    let h = Harness::start_with(Options {
        gateway,
        ..Default::default()
    })
    .await;
    let (status, _, body) = read(h.chat(&chat_with(json!({}))).await).await;
    assert_eq!(status, 502, "a provider credential problem: {body}");
    let attempt = &body["error"]["attempts"][0];
    assert_eq!(attempt["status"], 403);
    assert!(attempt["error"]
        .as_str()
        .unwrap()
        .contains("request signature we calculated does not match"));
    let (_, _, body) = read(
        h.chat(&chat_with(json!({"model": "qwen.qwen3-32b-v1:0"})))
            .await,
    )
    .await;
    assert_eq!(body["error"]["attempts"][0]["skipped"], true, "{body}");
}

#[tokio::test]
async fn what_converse_cannot_carry_is_refused_by_name() {
    let h = Harness::start().await;
    for (fields, param) in [
        (json!({"n": 2}), "n"),
        (json!({"temperature": 1.5}), "temperature"),
        (json!({"top_k": 5}), "top_k"),
        (
            json!({"tools": weather_tool(), "tool_choice": "none"}),
            "tool_choice",
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
    ] {
        let (status, _, body) = read(h.chat(&chat_with(fields.clone())).await).await;
        assert_eq!(status, 400, "{fields}: {body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    // Without the free providers Nemotron Nano 9B (Bedrock) is economy's cheapest, but it cannot take `top_k`.
    let h = Harness::start_with(Options {
        without: vec![ProviderId::Groq, ProviderId::Cerebras],
        ..Default::default()
    })
    .await;
    let cheap = json!({"model": "economy", "prefer": "cheap", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        header(&h.chat(&cheap).await, "x-model-router-model"),
        "nvidia.nemotron-nano-9b-v2"
    );
    let mut with_top_k = cheap.clone();
    with_top_k["top_k"] = json!(5);
    let response = h.chat(&with_top_k).await;
    assert_eq!(response.status(), 200);
    assert_ne!(header(&response, "x-model-router-provider"), "bedrock");
}

/// A Bedrock Claude model, added to the shipped catalog (the product's tiers
/// hold none): it caches prompts, so its entry has cache prices.
const BEDROCK_CLAUDE: &str = r#"
[[models]]
id = "bedrock-claude-sonnet-4-6"
provider = "bedrock"
provider_model_id = "us.anthropic.claude-sonnet-4-6-v1:0"
tier = "standard"
context_window = 200000
max_output_tokens = 64000
input_per_mtok = "3.00"
output_per_mtok = "15.00"
cached_input_per_mtok = "0.30"
cache_write_per_mtok = "3.75"
quality = 64
coding = 78
ttft_ms = 1200
output_tokens_per_s = 70
capabilities = ["tools", "vision", "streaming"]
"#;

#[tokio::test]
async fn cache_marks_become_cache_points_for_models_that_cache_and_are_billed_at_cache_rates() {
    let dir = std::env::temp_dir().join(format!("mr-bedrock-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("models.toml");
    let with_claude = catalog::BUILTIN_TOML.replacen(
        "\n[[embedding_models]]",
        &format!("{BEDROCK_CLAUDE}\n[[embedding_models]]"),
        1,
    );
    std::fs::write(&file, with_claude).unwrap();
    let h = Harness::start_with(Options {
        catalog_file: Some(file),
        ..Default::default()
    })
    .await;
    let long = "Follow the house style. ".repeat(400);
    let request = |model: &str, question: &str| {
        json!({"model": model, "messages": [
            {"role": "system", "content": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [{"type": "text", "text": question}]}
        ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": {"type": "ephemeral"}}]})
    };
    let (status, first_headers, first) =
        read(h.chat(&request("bedrock-claude-sonnet-4-6", "One?")).await).await;
    assert_eq!(status, 200, "{first}");
    let sent = sent_to(&h, "bedrock").await;
    assert_eq!(
        sent["system"][1],
        json!({"cachePoint": {"type": "default"}}),
        "{sent}"
    );
    assert_eq!(
        sent["toolConfig"]["tools"][1],
        json!({"cachePoint": {"type": "default"}})
    );
    assert!(
        first["usage"]["cache_creation_input_tokens"]
            .as_u64()
            .unwrap()
            > 1_000,
        "{first}"
    );
    let (_, second_headers, second) =
        read(h.chat(&request("bedrock-claude-sonnet-4-6", "Two?")).await).await;
    let read_tokens = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(read_tokens > 1_000, "{second}");
    let cost = |headers: &reqwest::header::HeaderMap| -> f64 {
        headers["x-model-router-cost"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        cost(&second_headers) < cost(&first_headers) / 2.0,
        "a cache read costs a tenth"
    );
    // A Bedrock model without cache prices gets no cache points (Bedrock would refuse them).
    let (status, _, body) = read(h.chat(&request("deepseek.v3.2", "Three?")).await).await;
    assert_eq!(status, 200, "{body}");
    let sent = sent_to(&h, "bedrock").await;
    assert!(!sent.to_string().contains("cachePoint"), "{sent}");
    std::fs::remove_dir_all(&dir).ok();
}
