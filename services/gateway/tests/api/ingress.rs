//! Every ingress (Chat Completions, Anthropic Messages, OpenAI Responses):
//! billed however the client behaves, and refusing bad input in its own
//! envelope. (The official SDKs referee the wire formats in tests/python.)

use events::AccountId;
use serde_json::{json, Value};
use test_support::backends::Backends;
use test_support::Harness;

use crate::billing::{gateway_on, grant, wait_credit, SETTLE};
use crate::{header, read};

/// A long streamed request on each ingress, and the text that marks a delta in its stream.
fn streams() -> [(&'static str, Value, &'static str); 3] {
    let text = "Tell me a long story about routers";
    [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4.1", "stream": true, "messages": [{"role": "user", "content": text}]}),
            "\"content\":\"",
        ),
        (
            "/v1/messages",
            json!({"model": "gpt-4.1", "max_tokens": 500, "stream": true, "messages": [{"role": "user", "content": text}]}),
            "\"text_delta\"",
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4.1", "stream": true, "input": text}),
            "response.output_text.delta",
        ),
    ]
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_is_billed_on_every_ingress() {
    for (path, body, delta) in streams() {
        let backends = Backends::embedded().await;
        let ledger = backends.spawn_ledger().await;
        let account = AccountId::new();
        grant(&backends, account, "10").await;
        let h = gateway_on(&backends, account, "gw-a").await;
        wait_credit(&h).await;
        h.fault(json!({"provider": "openai", "chunk_delay_ms": 200}))
            .await;
        let mut response = h.post(path, &body).await;
        assert_eq!(response.status(), 200, "{path}");
        let mut received = String::new();
        while received.matches(delta).count() < 2 {
            let chunk = response.chunk().await.unwrap().expect("more chunks");
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(response);
        assert_eq!(backends.wait_usage(1, SETTLE).await, 1, "{path}");
        let (outcome, output, cost): (String, i64, i64) =
            sqlx::query_as("SELECT outcome, output_tokens, cost FROM requests")
                .fetch_one(&backends.store.pool)
                .await
                .unwrap();
        assert_eq!(outcome, "client_disconnected", "{path}");
        assert!(output > 0 && cost > 0, "{path}");
        ledger.abort();
        backends.cleanup().await;
    }
}

#[tokio::test]
async fn whole_and_streamed_answers_are_billed_once_at_the_cost_they_report() {
    let backends = Backends::embedded().await;
    let ledger = backends.spawn_ledger().await;
    let account = AccountId::new();
    grant(&backends, account, "10").await;
    let h = gateway_on(&backends, account, "gw-a").await;
    wait_credit(&h).await;
    let messages = json!({"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, body) = read(h.post("/v1/messages", &messages).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["usage"]["cost"],
        headers["x-model-router-cost"].to_str().unwrap()
    );
    let responses = json!({"model": "gemini-2.5-pro", "input": "hi"});
    let (status, headers, body) = read(h.post("/v1/responses", &responses).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["usage"]["cost"],
        headers["x-model-router-cost"].to_str().unwrap()
    );
    for (path, body, _) in streams() {
        let text = h.post(path, &body).await.text().await.unwrap();
        assert!(
            text.contains("\"cost\""),
            "{path}: the final usage carries the cost"
        );
    }
    let sent = 2 + streams().len() as i64;
    assert_eq!(backends.wait_usage(sent, SETTLE).await, sent);
    let (rows, kinds): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM requests")
            .fetch_one(&backends.store.pool)
            .await
            .unwrap();
    assert_eq!((rows, kinds), (sent, sent), "each request billed once");
    ledger.abort();
    backends.cleanup().await;
}

#[tokio::test]
async fn bad_input_is_refused_in_each_apis_envelope() {
    let h = Harness::start().await;
    // Messages: Anthropic's envelope, with the status chat would give.
    let oversized = "x".repeat(h.gateway.config.body_limit_bytes + 1);
    let big = json!({"model": "standard", "max_tokens": 5, "messages": [{"role": "user", "content": oversized}]});
    let (status, _, body) = read(h.post("/v1/messages", &big).await).await;
    assert_eq!((status, body["type"].as_str()), (413, Some("error")));
    assert_eq!(body["error"]["type"], "request_too_large");
    let unknown = json!({"model": "standard", "max_tokens": 5, "models": ["nope"], "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = read(h.post("/v1/messages", &unknown).await).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );
    let no_key = h
        .http
        .post(format!("{}/v1/messages", h.url))
        .json(&unknown)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(no_key).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    // A proxy's `Authorization` of another scheme does not hide `x-api-key`.
    let behind_proxy = h
        .http
        .post(format!("{}/v1/messages", h.url))
        .header("authorization", "Basic cHJveHk6cGFzcw==")
        .header("x-api-key", &h.key)
        .json(&json!({"model": "standard", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(behind_proxy.status(), 200);
    // Responses: OpenAI's envelope, naming the field.
    let bad_temperature = json!({"model": "standard", "input": "x", "temperature": 3});
    let (status, _, body) = read(h.post("/v1/responses", &bad_temperature).await).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("temperature"))
    );
    let not_json = h
        .http
        .post(format!("{}/v1/responses", h.url))
        .bearer_auth(&h.key)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(not_json).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let ok = h
        .post("/v1/responses", &json!({"model": "standard", "input": "x"}))
        .await;
    assert_eq!(ok.status(), 200);
    assert!(!header(&ok, "x-request-id").is_empty());
}

#[tokio::test]
async fn a_stream_the_provider_breaks_off_ends_in_each_apis_error_event() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "openai", "cut_after_chunks": 3}))
        .await;
    let ends = [
        ("/v1/chat/completions", "upstream_stream_error"),
        ("/v1/messages", "event: error"),
        ("/v1/responses", "event: response.failed"),
    ];
    for ((path, body, _), (_, end)) in streams().into_iter().zip(ends) {
        let response = h.post(path, &body).await;
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains(end), "{path}: {text}");
        assert!(
            !text.contains("message_stop") && !text.contains("response.completed"),
            "{path}"
        );
        if path != "/v1/messages" {
            // Anthropic's `error` event carries no usage; the others show what is billed.
            assert!(text.contains("\"cost\""), "{path}: {text}");
        }
    }
}
