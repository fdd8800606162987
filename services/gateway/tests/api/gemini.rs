//! Gemini behind the OpenAI endpoint: what goes out (as the simulator
//! recorded it) and what comes back.

use serde_json::{json, Value};
use test_support::{sse_data, Harness};

use crate::{read, request_with, sent_to, usd, weather_tool};

const MODEL: &str = "gemini-2.5-flash";

/// The last request body the simulated provider received.
async fn sent(h: &Harness) -> Value {
    sent_to(h, "google").await
}

fn chat_with(fields: Value) -> Value {
    request_with(MODEL, fields)
}

#[tokio::test]
async fn roles_system_instruction_and_generation_config_go_out_as_gemini_expects() {
    let h = Harness::start().await;
    let (status, headers, body) = read(
        h.chat(&json!({"model": MODEL, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell me"},
            {"role": "user", "content": "about routers"}
        ], "temperature": 1.5, "top_p": 0.9, "top_k": 20, "stop": ["\n\n"], "seed": 7, "n": 2,
           "presence_penalty": 0.5}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-model-router-provider"], "google");
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
    assert_eq!(body["choices"][1]["index"], 1);
    let out = sent(&h).await;
    assert_eq!(
        out["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        out["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Tell me"}, {"text": "about routers"}]}
        ])
    );
    assert_eq!(
        out["generationConfig"],
        json!({"temperature": 1.5, "topP": 0.9, "topK": 20, "maxOutputTokens": 65536,
               "stopSequences": ["\n\n"], "candidateCount": 2, "seed": 7, "presencePenalty": 0.5})
    );
}

#[tokio::test]
async fn images_go_inline_and_urls_are_refused_by_field() {
    let h = Harness::start().await;
    let image = |url: &str| {
        json!({"model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}]})
    };
    let response = h.chat(&image("data:image/jpeg;base64,/9j/4AAQ")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        sent(&h).await["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}})
    );
    let (status, _, body) = read(h.chat(&image("https://example.com/cat.jpg")).await).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages"))
    );
}

#[tokio::test]
async fn function_calls_round_trip() {
    let h = Harness::start().await;
    let ask = json!({"role": "user", "content": "Weather in Oslo?"});
    let (_, _, first) = read(
        h.chat(
            &json!({"model": MODEL, "messages": [ask], "tools": weather_tool(),
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        )
        .await,
    )
    .await;
    let out = sent(&h).await;
    assert_eq!(
        out["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        out["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    let choice = &first["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{first}");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();

    let follow_up = json!({"model": MODEL, "tools": weather_tool(), "messages": [
        ask, choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "4 degrees, rain"}
    ]});
    let (status, _, second) = read(h.chat(&follow_up).await).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["choices"][0]["finish_reason"], "stop");
    let out = sent(&h).await;
    assert_eq!(
        out["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": arguments}}]})
    );
    assert_eq!(
        out["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "4 degrees, rain"}}}]})
    );
}

#[tokio::test]
async fn json_mode_sends_the_schema_and_answers_with_it() {
    let h = Harness::start().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "rain": {"type": "boolean"}}});
    let (_, _, body) = read(
        h.chat(&chat_with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}})))
            .await,
    )
    .await;
    let answer: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer, json!({"city": "sample", "rain": true}));
    let config = &sent(&h).await["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(config["responseJsonSchema"], schema);
}

#[tokio::test]
async fn finish_reasons_map() {
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
    let request = chat_with(json!({}));
    let (_, headers, body) = read(h.chat(&request).await).await;
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    // gemini-2.5-flash: $0.30 / $2.50 per million = 300 / 2,500 nano-dollars per token.
    assert_eq!(
        headers["x-model-router-cost"],
        usd(prompt, completion, 300, 2_500).as_str()
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
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, body["choices"][0]["message"]["content"]);
    let last = chunks.last().unwrap();
    assert_eq!(
        (
            last["usage"]["prompt_tokens"].as_u64(),
            last["usage"]["completion_tokens"].as_u64()
        ),
        (Some(prompt), Some(completion))
    );
    assert_eq!(last["usage"]["cost"], usd(prompt, completion, 300, 2_500));
}

#[tokio::test]
async fn streamed_function_calls_arrive_whole() {
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
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(calls[0][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(arguments["city"].is_string());
}

#[tokio::test]
async fn provider_errors_map_and_retry_where_they_should() {
    let h = Harness::start().await;
    let pinned = chat_with(json!({}));
    h.fault(json!({"provider": "google", "status": 400, "times": 1}))
        .await;
    let (status, _, body) = read(h.chat(&pinned).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("upstream_rejected"))
    );

    // 503 is retryable: listed as an attempt, not returned as the client's fault.
    h.fault(json!({"provider": "google", "status": 503, "times": 1}))
        .await;
    let (status, _, body) = read(h.chat(&pinned).await).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "all_candidates_failed");
    assert_eq!(body["error"]["attempts"][0]["status"], 503);

    // Last: a 429 with Retry-After also cools the model down for that long.
    h.fault(json!({"provider": "google", "status": 429, "retry_after_s": 5, "times": 1}))
        .await;
    let (status, headers, _) = read(h.chat(&pinned).await).await;
    assert_eq!(
        (status, headers["retry-after"].to_str().unwrap()),
        (429, "5")
    );
}
