use serde_json::{json, Value};
use test_support::Harness;

use crate::{ask, header, read, usd};

#[tokio::test]
async fn non_streaming_reply_carries_routing_headers_and_exact_cost() {
    let h = Harness::start().await;
    let response = h
        .chat(&ask("gpt-4.1", "What is the capital of France?"))
        .await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "x-request-id").starts_with("req_"));
    assert_eq!(header(&response, "x-model-router-model"), "gpt-4.1");
    assert_eq!(header(&response, "x-model-router-provider"), "openai");
    assert_eq!(header(&response, "x-model-router-attempts"), "1");
    let cost = header(&response, "x-model-router-cost");
    let (_, _, body) = read(response).await;
    assert_eq!(
        body["model"], "gpt-4.1",
        "the body names the catalog model that ran"
    );
    assert_eq!(body["object"], "chat.completion");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.contains("What is the capital of France?"),
        "{content}"
    );
    let (p, c) = (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 5 && c > 5);
    // gpt-4.1 lists $2.00/M input and $8.00/M output: 2,000 and 8,000 nano-dollars a token.
    assert_eq!(cost, usd(p, c, 2_000, 8_000));
    assert_eq!(
        body["usage"]["cost"], cost,
        "the body carries the cost too, as a stream's usage chunk does"
    );
}

#[tokio::test]
async fn free_models_cost_zero_and_cheap_tiers_use_them() {
    let h = Harness::start().await;
    let response = h.chat(&ask("llama-3.3-70b-versatile", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-model-router-provider"), "groq");
    assert_eq!(header(&response, "x-model-router-cost"), "0");
    let (_, _, body) = read(response).await;
    assert_eq!(body["usage"]["cost"], "0");
}

#[tokio::test]
async fn request_fields_reach_the_provider_faithfully() {
    let h = Harness::start().await;
    let request = json!({
        "model": "gpt-4.1", "prefer": "quality",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Describe this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"answer\": 42}"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
        "tool_choice": "auto", "temperature": 0.3, "top_p": 0.9, "max_tokens": 40, "stop": ["\n\n"],
        "seed": 11, "n": 2, "user": "user-7", "response_format": {"type": "json_object"},
        "logit_bias": {"1734": -100}, "presence_penalty": 0.5
    });
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"].as_array().unwrap().len(),
        2,
        "n is honoured"
    );
    let upstream = h.upstream_requests().await;
    let sent = &upstream.last().unwrap()["body"];
    let mut expected = request.clone();
    expected.as_object_mut().unwrap().remove("prefer");
    expected["model"] = json!("gpt-4.1");
    assert_eq!(
        sent, &expected,
        "the provider received exactly the client's request, minus routing fields"
    );
    // After a tool result the model answers in JSON mode.
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(content).is_ok(), "{content}");
}

#[tokio::test]
async fn tool_calls_come_back_in_openai_shape() {
    let h = Harness::start().await;
    let request = json!({
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    });
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "sample", "days": 1}));
}

#[tokio::test]
async fn reasoning_models_get_max_completion_tokens() {
    let h = Harness::start().await;
    let mut request = ask("o4-mini", "Think about routing");
    request["max_tokens"] = json!(12);
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(
        status, 200,
        "the simulator refuses max_tokens for o4-mini, so the adapter must rename it: {body}"
    );
    assert_eq!(body["usage"]["completion_tokens"], 12);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let upstream = h.upstream_requests().await;
    let sent = &upstream.last().unwrap()["body"];
    assert_eq!(sent["max_completion_tokens"], 12);
    assert!(sent.get("max_tokens").is_none());
}

#[tokio::test]
async fn images_route_only_to_vision_models() {
    let h = Harness::start().await;
    let request = json!({
        "model": "economy", "prefer": "cheap",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]
    });
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200);
    // Of the free models only Llama 4 Scout on Groq has vision; cheap picks it.
    assert_eq!(
        header(&response, "x-model-router-model"),
        "meta-llama/llama-4-scout-17b-16e-instruct"
    );
}
