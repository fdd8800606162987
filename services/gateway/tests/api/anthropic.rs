//! Anthropic behind the OpenAI endpoint: what goes out (as the simulator
//! recorded it) and what comes back.

use serde_json::{json, Value};
use test_support::{sse_data, Harness};

use crate::{header, read, sent_to, usd, weather_tool};

const MODEL: &str = "claude-haiku-4-5";

/// The last request body the simulated provider received.
async fn sent(h: &Harness) -> Value {
    sent_to(h, "anthropic").await
}

#[tokio::test]
async fn system_prompts_are_lifted_and_same_role_turns_merged() {
    let h = Harness::start().await;
    let response = h
        .chat(&json!({"model": MODEL, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Tell me"},
            {"role": "user", "content": [{"type": "text", "text": "about routers"}]}
        ], "user": "u-42", "stop": "\n\n", "top_p": 0.9}))
        .await;
    let (status, headers, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-model-router-provider"], "anthropic");
    assert_eq!(body["model"], MODEL);
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("about routers"));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let out = sent(&h).await;
    assert_eq!(out["system"], "Be brief.\n\nAnswer in English.");
    assert_eq!(out["max_tokens"], 64_000, "the model's maximum when unset");
    assert_eq!(out["metadata"], json!({"user_id": "u-42"}));
    assert_eq!(out["stop_sequences"], json!(["\n\n"]));
    assert_eq!(out["top_p"], 0.9);
    let roles: Vec<&str> = out["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(
        out["messages"][2]["content"],
        json!([{"type": "text", "text": "Tell me"}, {"type": "text", "text": "about routers"}])
    );
}

#[tokio::test]
async fn images_become_image_blocks() {
    let h = Harness::start().await;
    let response = h
        .chat(
            &json!({"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let blocks = sent(&h).await["messages"][0]["content"].clone();
    assert_eq!(
        blocks[1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        blocks[2],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
    );
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let h = Harness::start().await;
    let ask = json!({"role": "user", "content": "Weather in Oslo?"});
    let (_, _, first) = read(
        h.chat(&json!({"model": MODEL, "messages": [ask], "tools": weather_tool(), "tool_choice": "required"}))
            .await,
    )
    .await;
    let choice = &first["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{first}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(arguments["city"].is_string());
    assert_eq!(sent(&h).await["tool_choice"], json!({"type": "any"}));

    let follow_up = json!({"model": MODEL, "tools": weather_tool(), "messages": [
        ask,
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "4 degrees, rain"}
    ]});
    let (status, _, second) = read(h.chat(&follow_up).await).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["choices"][0]["finish_reason"], "stop");
    let out = sent(&h).await;
    assert_eq!(
        out["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": call["id"], "name": "get_weather", "input": arguments})
    );
    assert_eq!(
        out["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "4 degrees, rain"}]})
    );
}

#[tokio::test]
async fn json_mode_is_carried_by_a_forced_tool_and_answers_as_content() {
    let h = Harness::start().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "rain": {"type": "boolean"}}});
    let (status, _, body) = read(
        h.chat(&json!({"model": MODEL, "messages": [{"role": "user", "content": "Oslo weather as JSON"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}}}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let message = &body["choices"][0]["message"];
    let answer: Value = serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer, json!({"city": "sample", "rain": true}));
    assert!(message.get("tool_calls").is_none());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let out = sent(&h).await;
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "weather"})
    );
    assert_eq!(out["tools"][0]["input_schema"], schema);
}

#[tokio::test]
async fn every_stop_reason_maps_to_its_finish_reason() {
    let h = Harness::start().await;
    let finish = |body: Value| body["choices"][0]["finish_reason"].clone();
    let base =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Tell me about routers"}]});
    let with = |extra: Value| {
        let mut request = base.clone();
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    let cases = [
        (json!({}), "stop"),                              // end_turn
        (json!({"stop": ["router"]}), "stop"),            // stop_sequence
        (json!({"max_tokens": 3}), "length"),             // max_tokens
        (json!({"tools": weather_tool()}), "tool_calls"), // tool_use
    ];
    for (extra, expected) in cases {
        let (_, _, body) = read(h.chat(&with(extra.clone())).await).await;
        assert_eq!(finish(body), expected, "{extra}");
    }
}

#[tokio::test]
async fn usage_and_cost_are_exact_whole_and_streamed() {
    let h = Harness::start().await;
    let request = json!({"model": MODEL, "messages": [{"role": "user", "content": "Price me"}]});
    let (_, headers, body) = read(h.chat(&request).await).await;
    let usage = &body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(prompt > 0 && completion > 0);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
    // claude-haiku-4-5: $1 / $5 per million tokens = 1,000 / 5,000 nano-dollars per token.
    assert_eq!(
        headers["x-model-router-cost"],
        usd(prompt, completion, 1_000, 5_000).as_str()
    );

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let text = h.chat(&streamed).await.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["usage"]["prompt_tokens"], prompt);
    assert_eq!(last["usage"]["completion_tokens"], completion);
    assert_eq!(last["usage"]["cost"], usd(prompt, completion, 1_000, 5_000));
}

#[tokio::test]
async fn streams_carry_text_and_tool_call_deltas() {
    let h = Harness::start().await;
    let request = json!({"model": MODEL, "stream": true, "tools": weather_tool(), "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]});
    let text = h.chat(&request).await.text().await.unwrap();
    let chunks: Vec<Value> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert!(calls.len() > 2, "the head, then argument pieces");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert!(calls[0][0]["id"].as_str().unwrap().starts_with("toolu_"));
    let arguments: String = calls
        .iter()
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert!(serde_json::from_str::<Value>(&arguments).unwrap()["city"].is_string());
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    assert!(chunks.iter().all(|c| c["model"] == MODEL));
}

#[tokio::test]
async fn thinking_is_returned_only_when_asked() {
    let h = Harness::start().await;
    let mut request = json!({"model": MODEL, "messages": [{"role": "user", "content": "Think"}]});
    let (_, _, plain) = read(h.chat(&request).await).await;
    assert!(plain["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let (_, _, thought) = read(h.chat(&request).await).await;
    let message = &thought["choices"][0]["message"];
    assert!(message["reasoning_content"]
        .as_str()
        .unwrap()
        .starts_with("The user asks about"));
    assert!(!message["content"]
        .as_str()
        .unwrap()
        .contains("The user asks about"));
    assert_eq!(
        sent(&h).await["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
}

#[tokio::test]
async fn provider_errors_map_to_the_openai_envelope_and_retry_where_they_should() {
    let h = Harness::start().await;
    let pinned = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});

    h.fault(json!({"provider": "anthropic", "status": 400, "times": 1}))
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

    h.fault(json!({"provider": "anthropic", "status": 529, "times": 1}))
        .await;
    let (status, _, body) = read(h.chat(&pinned).await).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["attempts"][0]["status"], 529);

    // Overloaded is retryable: economy by coding leads with claude-haiku-4-5, then o4-mini.
    h.fault(json!({"provider": "anthropic", "status": 529, "times": 1}))
        .await;
    let response = h
        .chat(&json!({"model": "economy", "prefer": "coding", "messages": [{"role": "user", "content": "code"}]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-model-router-model"), "o4-mini");
    assert_eq!(header(&response, "x-model-router-attempts"), "2");

    h.fault(json!({"provider": "anthropic", "status": 429, "retry_after_s": 7, "times": 1}))
        .await;
    let (status, headers, body) = read(h.chat(&pinned).await).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (429, Some("rate_limit_error"))
    );
    assert_eq!(headers["retry-after"], "7");
}

#[tokio::test]
async fn what_anthropic_cannot_carry_is_refused_by_name_or_routed_around() {
    let h = Harness::start().await;
    let cases = [
        (json!({"n": 2}), "n"),
        (json!({"temperature": 1.5}), "temperature"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
        (
            json!({"tools": weather_tool(), "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}),
            "messages",
        ),
    ];
    for (extra, param) in cases {
        let mut request = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, _, body) = read(h.chat(&request).await).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    // In a tier, the other candidates carry it instead.
    let response = h
        .chat(&json!({"model": "economy", "prefer": "coding", "n": 2, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_ne!(header(&response, "x-model-router-provider"), "anthropic");
}
