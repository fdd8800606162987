use serde_json::{json, Value};
use test_support::{sse_data, Harness};

use crate::{header, usd};

async fn stream_events(h: &Harness, request: &Value) -> (reqwest::header::HeaderMap, Vec<String>) {
    let response = h.chat(request).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let headers = response.headers().clone();
    (headers, sse_data(&response.text().await.unwrap()))
}

#[tokio::test]
async fn stream_relays_chunks_then_usage_with_cost_then_done() {
    let h = Harness::start().await;
    let mut request = json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "Tell me about routers"}]});
    let whole: Value = h.chat(&request).await.json().await.unwrap();
    request["stream"] = json!(true);
    let (headers, events) = stream_events(&h, &request).await;
    assert_eq!(headers["x-model-router-model"], "gpt-4.1");
    assert_eq!(headers["x-model-router-provider"], "openai");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["model"] == "gpt-4.1" && c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap(),
        "streamed text equals the whole reply"
    );
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let usage = &usage_chunk["usage"];
    assert_eq!(usage["prompt_tokens"], whole["usage"]["prompt_tokens"]);
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(usage["cost"], usd(p, c, 2_000, 8_000));
    assert_eq!(
        chunks.iter().filter(|c| c.get("usage").is_some()).count(),
        1,
        "usage appears once, at the end"
    );
}

#[tokio::test]
async fn stream_carries_tool_call_deltas() {
    let h = Harness::start().await;
    let request = json!({
        "model": "grok-3-beta", "stream": true,
        "messages": [{"role": "user", "content": "Find flights"}],
        "tools": [{"type": "function", "function": {"name": "search_flights", "parameters": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}}}}]
    });
    let (_, events) = stream_events(&h, &request).await;
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert!(deltas.len() > 2, "arguments arrive in several fragments");
    assert_eq!(deltas[0][0]["function"]["name"], "search_flights");
    assert!(deltas[0][0]["id"].as_str().unwrap().starts_with("call_"));
    let args: String = deltas
        .iter()
        .filter_map(|d| d[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"from": "sample", "to": "sample"})
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn stream_cut_before_the_first_chunk_falls_back() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "cerebras", "cut_after_chunks": 0}))
        .await;
    let request = json!({"model": "economy", "prefer": "cheap", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (headers, events) = stream_events(&h, &request).await;
    // qwen-3-235b (Cerebras) leads `cheap`; its stream dies before any chunk, so the next free model serves.
    assert_eq!(headers["x-model-router-model"], "llama-3.3-70b-versatile");
    assert_eq!(headers["x-model-router-attempts"], "2");
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn stream_cut_after_the_first_chunk_ends_with_an_error_event() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "cerebras", "cut_after_chunks": 3}))
        .await;
    let request = json!({"model": "qwen-3-235b-a22b-instruct-2507", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (_, events) = stream_events(&h, &request).await;
    assert_eq!(
        events.len(),
        5,
        "three relayed chunks, the usage so far, then the error: {events:?}"
    );
    // The provider broke off before its usage chunk: what was streamed is counted here.
    let streamed: String = events[..3]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let usage: Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(
        usage["usage"]["completion_tokens"],
        tokens::TokenCounter::default().count_text(&streamed)
    );
    assert!(usage["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(usage["usage"]["cost"], "0", "a free model");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert!(!events.contains(&"[DONE]".to_owned()));
}
