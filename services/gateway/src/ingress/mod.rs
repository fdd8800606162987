//! Ingresses that speak another API than Chat Completions: each translates
//! its request into a chat request, goes through the same [`crate::dispatch`]
//! as `/v1/chat/completions`, and renders the answer in its own shapes.
//!
//! - [`messages`]: Anthropic's Messages API (`POST /v1/messages`), for the
//!   Anthropic SDKs and Claude Code;
//! - [`responses`]: OpenAI's Responses API (`POST /v1/responses`), stateless.

pub mod messages;
pub mod responses;

use serde_json::Value;

/// A tool call's JSON arguments as an object, as Anthropic's `input` and a
/// replayed call need them; text that is not a JSON object is kept whole
/// under `arguments`, never dropped.
pub fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ if arguments.trim().is_empty() => Value::Object(Default::default()),
        _ => serde_json::json!({ "arguments": arguments }),
    }
}

/// A fresh id with `prefix`, for items the upstream did not name.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}
