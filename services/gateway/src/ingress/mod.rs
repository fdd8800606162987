//! Ingresses that speak another API than Chat Completions: each translates
//! its request into a chat request, goes through the same [`crate::dispatch`]
//! as `/v1/chat/completions`, and renders the answer in its own shapes.
//!
//! - [`messages`]: Anthropic's Messages API (`POST /v1/messages`), for the
//!   Anthropic SDKs and Claude Code;
//! - [`responses`]: OpenAI's Responses API (`POST /v1/responses`), stateless.

pub mod messages;
pub mod responses;

use openai::{ChatCompletion, ChatCompletionChunk, ToolCall, ToolCallDelta};
use serde_json::Value;

/// The reasoning text a chat message or delta carries, as the adapters report it.
const REASONING: &str = "reasoning_content";

/// A whole answer's first choice, in the order ingresses lay it out:
/// reasoning, text, tool calls.
pub struct Answer {
    /// What the model reasoned aloud, when it did.
    pub reasoning: Option<String>,
    /// The text: present when not empty, or when there are no calls.
    pub text: Option<String>,
    /// The tool calls, in order.
    pub calls: Vec<ToolCall>,
    /// Chat's finish reason.
    pub finish: Option<String>,
}

impl Answer {
    /// The first choice of `completion` (empty when it has none).
    pub fn of(completion: &mut ChatCompletion) -> Answer {
        let Some(choice) = std::mem::take(&mut completion.choices).into_iter().next() else {
            return Answer {
                reasoning: None,
                text: Some(String::new()),
                calls: Vec::new(),
                finish: None,
            };
        };
        let message = choice.message;
        let calls = message.tool_calls.unwrap_or_default();
        let text = message.content.unwrap_or_default();
        Answer {
            reasoning: message
                .extra
                .get(REASONING)
                .and_then(Value::as_str)
                .map(str::to_owned),
            text: (!text.is_empty() || calls.is_empty()).then_some(text),
            calls,
            finish: choice.finish_reason,
        }
    }
}

/// An ingress's stream writer: what one chat chunk adds, piece by piece.
pub trait Pieces {
    /// Reasoning text.
    fn reasoning(&mut self, text: &str, out: &mut Vec<u8>);
    /// Answer text.
    fn text(&mut self, text: String, out: &mut Vec<u8>);
    /// A fragment of a tool call (a new call when it has an id).
    fn call(&mut self, call: ToolCallDelta, out: &mut Vec<u8>);
}

/// Feeds the first choice of `chunk` to `pieces` (reasoning, then text,
/// then tool-call fragments); its finish reason, if it has one.
pub fn feed(
    chunk: ChatCompletionChunk,
    pieces: &mut impl Pieces,
    out: &mut Vec<u8>,
) -> Option<String> {
    let choice = chunk.choices.into_iter().next()?;
    let delta = choice.delta;
    if let Some(text) = delta.extra.get(REASONING).and_then(Value::as_str) {
        if !text.is_empty() {
            pieces.reasoning(text, out);
        }
    }
    if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
        pieces.text(text, out);
    }
    for call in delta.tool_calls.into_iter().flatten() {
        pieces.call(call, out);
    }
    choice.finish_reason
}

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
