//! Integration tests: the real gateway and simulator on port 0, spoken to over HTTP.

mod abuse;
mod anthropic;
mod auto;
mod bedrock;
mod billing;
mod breakers;
mod chat;
mod conformance;
mod embeddings;
mod errors;
mod gemini;
mod guard;
mod ingress;
mod key_rates;
mod models;
mod reload;
mod request_ids;
mod routing;
mod streaming;
mod timeouts;
mod usage_faults;

use reqwest::Response;
use serde_json::Value;

pub use test_support::header;

/// Status, headers and JSON body of a response.
pub async fn read(response: Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// A `get_weather(city)` function tool, in OpenAI's shape.
pub fn weather_tool() -> Value {
    serde_json::json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    }}])
}

/// The last request body `provider` received from the gateway, as the simulator recorded it.
pub async fn sent_to(h: &test_support::Harness, provider: &str) -> Value {
    h.upstream_requests()
        .await
        .into_iter()
        .rev()
        .find(|r| r["provider"] == provider)
        .unwrap_or_else(|| panic!("no request reached {provider}"))["body"]
        .clone()
}

/// A one-message request for `model` ("Tell me about routers") with `fields` added.
pub fn request_with(model: &str, fields: Value) -> Value {
    let mut request = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Tell me about routers"}]});
    if let (Some(request), Some(fields)) = (request.as_object_mut(), fields.as_object()) {
        request.extend(fields.clone());
    }
    request
}

/// A one-message request.
pub fn ask(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Cost in USD of `prompt`/`completion` tokens at list prices given in nano-dollars per token.
pub fn usd(
    prompt: u64,
    completion: u64,
    in_nanos_per_token: u64,
    out_nanos_per_token: u64,
) -> String {
    money::Money::from_nanos(
        (prompt * in_nanos_per_token + completion * out_nanos_per_token) as i64,
    )
    .to_string()
}
