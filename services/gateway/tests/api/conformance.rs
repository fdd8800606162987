//! The provider conformance suite: every adapter, driven directly through
//! the `Provider` trait against the simulator's copy of its provider, must
//! carry roles, tools, images and JSON mode, stream the same answer it
//! gives whole with usage at the end, and end a stream the provider cuts
//! (before or after the first chunk) with one error. A new adapter joins by
//! being in the catalog; a case its models cannot carry is skipped by
//! capability, never silently.

use std::sync::Arc;

use catalog::{Model, ProviderId};
use futures_util::StreamExt;
use gateway::providers::{Provider, ProviderError};
use openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use serde_json::{json, Value};
use test_support::Harness;

use crate::weather_tool;

/// The provider's model that carries the most of tools, images and JSON mode.
fn model_of(h: &Harness, provider: ProviderId) -> Arc<Model> {
    let catalog = h.gateway.catalog.snapshot();
    let score = |m: &Model| {
        let c = m.capabilities;
        u8::from(c.tools) + u8::from(c.vision) + u8::from(c.json_mode) + u8::from(c.streaming)
    };
    catalog
        .models()
        .iter()
        .filter(|m| m.provider == provider)
        .max_by_key(|m| score(m))
        .cloned()
        .unwrap_or_else(|| panic!("the catalog has no {provider} model"))
}

fn request(model: &Model, fields: Value) -> ChatRequest {
    let mut body = json!({
        "model": model.id,
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a router."},
            {"role": "assistant", "content": "A gateway."},
            {"role": "user", "content": "And another?"}
        ]
    });
    if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
        body.extend(fields.clone());
    }
    serde_json::from_value(body).expect("a chat request")
}

fn adapter(h: &Harness, provider: ProviderId) -> Arc<dyn Provider> {
    Arc::clone(
        h.gateway
            .providers
            .get(provider)
            .unwrap_or_else(|| panic!("{provider} is configured in the harness")),
    )
}

async fn complete(provider: &dyn Provider, model: &Model, request: &ChatRequest) -> ChatCompletion {
    provider
        .check(model, request)
        .expect("the adapter takes it");
    provider
        .complete(model, request)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", model.id))
}

/// Every item of a stream: the chunks, then the error that ended it, if any.
async fn drain(
    provider: &dyn Provider,
    model: &Model,
    request: &ChatRequest,
) -> (Vec<ChatCompletionChunk>, Option<ProviderError>) {
    let mut stream = match provider.stream(model, request).await {
        Ok(stream) => stream,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => chunks.push(chunk),
            Err(e) => {
                assert!(
                    stream.next().await.is_none(),
                    "{}: items after an error",
                    model.id
                );
                return (chunks, Some(e));
            }
        }
    }
    (chunks, None)
}

fn text_of(chunks: &[ChatCompletionChunk]) -> String {
    chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect()
}

#[tokio::test]
async fn every_adapter_carries_roles_and_reports_usage_whole_and_streamed() {
    let h = Harness::start().await;
    for id in ProviderId::ALL {
        let (provider, model) = (adapter(&h, id), model_of(&h, id));
        let asked = request(&model, json!({}));
        let whole = complete(provider.as_ref(), &model, &asked).await;
        let choice = &whole.choices[0];
        let content = choice.message.content.clone().unwrap_or_default();
        assert!(!content.is_empty(), "{id}: no answer");
        let usage = whole.usage.clone().expect("usage");
        assert!(
            usage.prompt_tokens > 0 && usage.completion_tokens > 0,
            "{id}: {usage:?}"
        );
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens,
            "{id}"
        );

        let mut streamed = request(&model, json!({"stream": true}));
        streamed.stream_options = serde_json::from_value(json!({"include_usage": true})).ok();
        let (chunks, error) = drain(provider.as_ref(), &model, &streamed).await;
        assert!(error.is_none(), "{id}: {error:?}");
        assert_eq!(text_of(&chunks), content, "{id}: streamed and whole differ");
        let last = chunks
            .last()
            .and_then(|c| c.usage.clone())
            .expect("a usage chunk last");
        assert_eq!(
            (last.prompt_tokens, last.completion_tokens),
            (usage.prompt_tokens, usage.completion_tokens),
            "{id}"
        );
    }
}

#[tokio::test]
async fn every_adapter_calls_tools_and_takes_their_results() {
    let h = Harness::start().await;
    for id in ProviderId::ALL {
        let (provider, model) = (adapter(&h, id), model_of(&h, id));
        if !model.capabilities.tools {
            continue;
        }
        let asked = request(
            &model,
            json!({"tools": weather_tool(), "tool_choice": "required"}),
        );
        let first = complete(provider.as_ref(), &model, &asked).await;
        assert_eq!(
            first.choices[0].finish_reason.as_deref(),
            Some("tool_calls"),
            "{id}"
        );
        let call = &first.choices[0].message.tool_calls.as_ref().expect("calls")[0];
        assert_eq!(call.function.name, "get_weather", "{id}");
        let arguments: Value = serde_json::from_str(&call.function.arguments).expect("JSON");
        assert!(arguments.is_object(), "{id}: {arguments}");

        let follow_up = request(
            &model,
            json!({"tools": weather_tool(), "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call.id, "content": "4 degrees, rain"}
            ]}),
        );
        let answer = complete(provider.as_ref(), &model, &follow_up).await;
        assert!(
            answer.choices[0]
                .message
                .content
                .as_deref()
                .is_some_and(|t| !t.is_empty()),
            "{id}"
        );
    }
}

#[tokio::test]
async fn every_adapter_carries_images_and_json_mode_where_its_model_can() {
    let h = Harness::start().await;
    let mut carried = (0, 0);
    for id in ProviderId::ALL {
        let (provider, model) = (adapter(&h, id), model_of(&h, id));
        if model.capabilities.vision {
            let image = request(
                &model,
                json!({"messages": [{"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                ]}]}),
            );
            complete(provider.as_ref(), &model, &image).await;
            carried.0 += 1;
        }
        if model.capabilities.json_mode {
            let json_mode = request(&model, json!({"response_format": {"type": "json_object"}}));
            let answer = complete(provider.as_ref(), &model, &json_mode).await;
            let text = answer.choices[0]
                .message
                .content
                .clone()
                .unwrap_or_default();
            let parsed: Result<Value, _> = serde_json::from_str(&text);
            assert!(parsed.is_ok(), "{id}: not JSON: {text}");
            carried.1 += 1;
        }
    }
    assert!(
        carried.0 >= 5 && carried.1 >= 5,
        "too few adapters checked: {carried:?}"
    );
}

#[tokio::test]
async fn every_adapter_ends_a_cut_stream_with_one_error() {
    let h = Harness::start().await;
    for id in ProviderId::ALL {
        let (provider, model) = (adapter(&h, id), model_of(&h, id));
        let streamed = request(&model, json!({"stream": true}));
        for cut_after in [0, 2] {
            h.fault(json!({"provider": id, "cut_after_chunks": cut_after, "times": 1}))
                .await;
            let (chunks, error) = drain(provider.as_ref(), &model, &streamed).await;
            assert!(
                error.is_some(),
                "{id}: a stream cut after {cut_after} ended cleanly"
            );
            if cut_after == 0 {
                assert!(
                    text_of(&chunks).is_empty(),
                    "{id}: text from a stream cut at once"
                );
            } else {
                assert!(
                    chunks.iter().all(|c| c.usage.is_none()),
                    "{id}: usage in a cut stream"
                );
            }
        }
    }
}
