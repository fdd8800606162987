//! Helpers for the adapters' translation tests.

use openai::ChatRequest;
use serde_json::{json, Value};

/// Parses an OpenAI request, as the gateway would.
pub fn request(value: Value) -> ChatRequest {
    serde_json::from_value(value).expect("a valid OpenAI request")
}

/// The top-level field names of a translated request, in order.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// A one-message request with `fields` added.
pub fn with(fields: Value) -> Value {
    let mut base = json!({"model": "standard", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(base), Some(fields)) = (base.as_object_mut(), fields.as_object()) {
        base.extend(fields.clone());
    }
    base
}
