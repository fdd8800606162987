//! Deterministic replies: the same request always gets the same answer, and
//! the answer visibly comes from the prompt.

use openai::{ChatRequest, FunctionCall, Role, ToolCall};
use serde_json::{json, Value};

/// What one choice says.
pub(crate) struct Reply {
    pub content: Option<String>,
    pub tool_calls: Option<Vec<ToolCall>>,
    pub finish_reason: &'static str,
    pub completion_tokens: u64,
}

const FILLER: [&str; 24] = [
    "the", "router", "sends", "each", "request", "to", "a", "model", "that", "fits", "its",
    "budget", "and", "keeps", "latency", "low", "while", "every", "answer", "stays", "exact", "so",
    "costs", "add",
];

/// FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The request's fingerprint for choice `index`.
pub(crate) fn seed_of(request: &ChatRequest, model: &str, index: u32) -> u64 {
    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, model.as_bytes());
    for message in &request.messages {
        for text in message.texts() {
            h = fnv1a(h, text.as_bytes());
        }
    }
    h = fnv1a(h, &index.to_le_bytes());
    fnv1a(h, &request.seed.unwrap_or(0).to_le_bytes())
}

/// The reply for choice `index` of `request`, as `model`.
pub(crate) fn reply(request: &ChatRequest, model: &str, index: u32) -> Reply {
    let seed = seed_of(request, model, index);
    let tokenizer = bpe_openai::o200k_base();
    if let Some(call) = tool_call(request, seed) {
        let tokens = tokenizer.count(call.function.name.as_str())
            + tokenizer.count(call.function.arguments.as_str());
        return Reply {
            content: None,
            tool_calls: Some(vec![call]),
            finish_reason: "tool_calls",
            completion_tokens: tokens as u64 + 3,
        };
    }
    let mut text = prose(request, model, seed);
    if let Some(schema_value) = json_mode(request) {
        text = schema_value.to_string();
    }
    let mut finish_reason = "stop";
    if let Some(stop) = &request.stop {
        for s in stop.sequences().into_iter().filter(|s| !s.is_empty()) {
            if let Some(at) = text.find(s) {
                text.truncate(at);
            }
        }
    }
    let mut tokens = tokenizer.encode(text.as_str());
    if let Some(max) = request.requested_output_tokens() {
        if tokens.len() > max as usize {
            tokens.truncate(max as usize);
            text = tokenizer.decode(&tokens).unwrap_or_default();
            finish_reason = "length";
        }
    }
    Reply {
        content: Some(text),
        tool_calls: None,
        finish_reason,
        completion_tokens: tokens.len() as u64,
    }
}

fn prose(request: &ChatRequest, model: &str, seed: u64) -> String {
    let last_user = request.messages.iter().rev().find(|m| m.role == Role::User);
    let topic: Vec<&str> = last_user
        .map(|m| m.texts().flat_map(str::split_whitespace).take(8).collect())
        .unwrap_or_default();
    let mut text = format!("Simulated reply from {model} to \"{}\".", topic.join(" "));
    let mut state = seed | 1;
    for _ in 0..(16 + seed % 48) {
        // xorshift64: a cheap deterministic word picker.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push(' ');
        text.push_str(FILLER[(state % FILLER.len() as u64) as usize]);
    }
    text.push('.');
    text
}

fn json_mode(request: &ChatRequest) -> Option<Value> {
    let format = request.response_format.as_ref()?;
    match format.get("type")?.as_str()? {
        "json_object" => Some(json!({"answer": "simulated", "ok": true})),
        "json_schema" => Some(sample(
            format
                .pointer("/json_schema/schema")
                .unwrap_or(&Value::Null),
            0,
        )),
        _ => None,
    }
}

fn tool_call(request: &ChatRequest, seed: u64) -> Option<ToolCall> {
    let tools = request.tools.as_ref().filter(|t| !t.is_empty())?;
    if request
        .messages
        .last()
        .is_some_and(|m| m.role == Role::Tool)
    {
        return None;
    }
    let wanted = match &request.tool_choice {
        Some(Value::String(s)) if s == "none" => return None,
        Some(choice) => choice.pointer("/function/name").and_then(Value::as_str),
        None => None,
    };
    let tool = match wanted {
        Some(name) => tools.iter().find(|t| t.function.name == name)?,
        None => &tools[0],
    };
    let arguments = sample(tool.function.parameters.as_ref().unwrap_or(&Value::Null), 0);
    Some(ToolCall {
        id: format!("call_{seed:016x}"),
        kind: "function".into(),
        function: FunctionCall {
            name: tool.function.name.clone(),
            arguments: arguments.to_string(),
        },
    })
}

/// A value that satisfies a (simple) JSON schema.
fn sample(schema: &Value, depth: u32) -> Value {
    if depth > 4 {
        return Value::Null;
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        return choices.first().cloned().unwrap_or(Value::Null);
    }
    match schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
    {
        "string" => json!("sample"),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "array" => json!([sample(
            schema.get("items").unwrap_or(&Value::Null),
            depth + 1
        )]),
        "null" => Value::Null,
        _ => {
            let mut object = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    object.insert(name.clone(), sample(prop, depth + 1));
                }
            }
            Value::Object(object)
        }
    }
}
