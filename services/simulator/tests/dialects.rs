//! The simulator spoken to directly, as a provider SDK would.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{sse_data, Harness};

async fn post(
    h: &Harness,
    path: &str,
    key: &str,
    body: &Value,
    fault: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = h
        .http
        .post(format!("{}{path}/chat/completions", h.sim_url))
        .bearer_auth(key)
        .json(body);
    if let Some(fault) = fault {
        request = request.header("x-sim-fault", fault);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.headers().clone(),
        response.text().await.unwrap(),
    )
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello, world!"}]})
}

#[tokio::test]
async fn answers_are_deterministic_with_exact_usage() {
    let h = Harness::start().await;
    let (status, _, first) = post(&h, "/openai/v1", "sim-key", &hello("gpt-4.1"), None).await;
    assert_eq!(status, 200, "{first}");
    let (_, _, second) = post(&h, "/openai/v1", "sim-key", &hello("gpt-4.1"), None).await;
    let (a, b): (Value, Value) = (
        serde_json::from_str(&first).unwrap(),
        serde_json::from_str(&second).unwrap(),
    );
    assert_eq!(a["choices"], b["choices"]);
    // "Hello, world!" is 4 o200k tokens, plus 3 for the message and 3 priming the reply.
    assert_eq!(a["usage"]["prompt_tokens"], 10);
    let content = a["choices"][0]["message"]["content"].as_str().unwrap();
    let counted = tokens::TokenCounter::default().count_text(content);
    assert_eq!(a["usage"]["completion_tokens"], counted);
    assert_eq!(a["usage"]["total_tokens"], 10 + counted);
}

#[tokio::test]
async fn auth_models_and_dialect_rules_are_enforced() {
    let h = Harness::start().await;
    let (status, _, body) = post(&h, "/openai/v1", "wrong", &hello("gpt-4.1"), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_api_key"));
    let (status, _, body) =
        post(&h, "/openai/v1", "sim-key", &hello("claude-opus-4-6"), None).await;
    assert_eq!(status, 404);
    assert!(body.contains("model_not_found"));
    let mut two = hello("llama-3.3-70b-versatile");
    two["n"] = json!(2);
    assert_eq!(
        post(&h, "/groq/openai/v1", "sim-key", &two, None).await.0,
        400
    );
    let mut capped = hello("o3");
    capped["max_tokens"] = json!(10);
    let (status, _, body) = post(&h, "/openai/v1", "sim-key", &capped, None).await;
    assert_eq!(status, 400);
    assert!(body.contains("max_completion_tokens"));
    let (status, _, body) = post(
        &h,
        "/groq/openai/v1",
        "sim-key",
        &hello("llama-3.3-70b-versatile"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["x_groq"]["id"].is_string());
    let (_, _, body) = post(&h, "/cerebras/v1", "sim-key", &hello("llama3.1-8b"), None).await;
    assert!(serde_json::from_str::<Value>(&body).unwrap()["time_info"].is_object());
}

#[tokio::test]
async fn streams_follow_openai_framing() {
    let h = Harness::start().await;
    let mut request = hello("grok-3-mini-beta");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let (status, headers, body) = post(&h, "/xai/v1", "sim-key", &request, None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_data(&body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    request["stream_options"] = json!({"include_usage": false});
    let (_, _, body) = post(&h, "/xai/v1", "sim-key", &request, None).await;
    assert!(
        !body.contains("\"usage\""),
        "usage only when asked, like OpenAI"
    );
}

#[tokio::test]
async fn faults_by_header_and_by_rule() {
    let h = Harness::start().await;
    let (status, headers, _) = post(
        &h,
        "/openai/v1",
        "sim-key",
        &hello("gpt-4.1"),
        Some(r#"{"status": 429, "retry_after_s": 3}"#),
    )
    .await;
    assert_eq!(
        (status, headers["retry-after"].to_str().unwrap()),
        (429, "3")
    );
    let (status, _, body) = post(
        &h,
        "/openai/v1",
        "sim-key",
        &hello("gpt-4.1"),
        Some("{not json"),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let started = Instant::now();
    let (status, _, _) = post(
        &h,
        "/openai/v1",
        "sim-key",
        &hello("gpt-4.1"),
        Some(r#"{"latency_ms": 150}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A rule for two requests, on one model only.
    h.fault(json!({"provider": "openai", "model": "gpt-4.1", "status": 503, "times": 2}))
        .await;
    assert_eq!(
        post(&h, "/openai/v1", "sim-key", &hello("gpt-4.1-mini"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        post(&h, "/openai/v1", "sim-key", &hello("gpt-4.1"), None)
            .await
            .0,
        503
    );
    assert_eq!(
        post(&h, "/openai/v1", "sim-key", &hello("gpt-4.1"), None)
            .await
            .0,
        503
    );
    assert_eq!(
        post(&h, "/openai/v1", "sim-key", &hello("gpt-4.1"), None)
            .await
            .0,
        200,
        "the rule expired"
    );

    let mut request = hello("gpt-4.1");
    request["stream"] = json!(true);
    let response = h
        .http
        .post(format!("{}/openai/v1/chat/completions", h.sim_url))
        .bearer_auth("sim-key")
        .header("x-sim-fault", r#"{"cut_after_chunks": 2}"#)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert!(
        response.text().await.is_err(),
        "the connection drops mid-body"
    );
}
