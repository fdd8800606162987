//! Deterministic replies: the same request always gets the same answer, and
//! the answer visibly comes from the prompt.

use openai::{ChatRequest, FunctionCall, Role, ToolCall};
use serde_json::{json, Value};

/// What one choice says.
pub(crate) struct Reply {
    pub content: Option<String>,
    pub tool_calls: Option<Vec<ToolCall>>,
    pub finish_reason: &'static str,
    /// The stop sequence the text was cut at, if one was.
    pub stop_sequence: Option<String>,
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

/// What a reply depends on, read from any dialect's request.
#[derive(Debug, Default)]
pub(crate) struct Ask<'a> {
    /// Every text of the conversation, in order (the reply's fingerprint).
    pub texts: Vec<&'a str>,
    /// The texts of the last user turn (the reply's topic).
    pub last_user: Vec<&'a str>,
    /// Tools offered: name and JSON schema of the input.
    pub tools: Vec<(&'a str, &'a Value)>,
    /// Which tool must be called: none, any, or a named one.
    pub tool_choice: ToolChoice<'a>,
    /// The conversation ends with a tool result: answer in prose.
    pub after_tool_result: bool,
    /// The JSON schema of the answer, in JSON mode.
    pub json_schema: Option<Value>,
    pub stop: Vec<&'a str>,
    pub max_tokens: Option<u32>,
    pub seed: i64,
}

/// How the request constrains tool use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolChoice<'a> {
    /// The model may call any tool (the simulator calls the first).
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// This tool.
    Named(&'a str),
}

impl<'a> Ask<'a> {
    /// What an OpenAI chat request asks.
    pub fn of_openai(request: &'a ChatRequest) -> Ask<'a> {
        let tools = request
            .tools
            .iter()
            .flatten()
            .map(|t| {
                (
                    t.function.name.as_str(),
                    t.function.parameters.as_ref().unwrap_or(&Value::Null),
                )
            })
            .collect();
        let tool_choice = match &request.tool_choice {
            Some(Value::String(s)) if s == "none" => ToolChoice::None,
            Some(choice) => choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map_or(ToolChoice::Auto, ToolChoice::Named),
            None => ToolChoice::Auto,
        };
        let last_user = request.messages.iter().rev().find(|m| m.role == Role::User);
        Ask {
            texts: request.messages.iter().flat_map(|m| m.texts()).collect(),
            last_user: last_user.map(|m| m.texts().collect()).unwrap_or_default(),
            tools,
            tool_choice,
            after_tool_result: request
                .messages
                .last()
                .is_some_and(|m| m.role == Role::Tool),
            json_schema: json_mode(request),
            stop: request
                .stop
                .as_ref()
                .map(|s| s.sequences())
                .unwrap_or_default(),
            max_tokens: request.requested_output_tokens(),
            seed: request.seed.unwrap_or(0),
        }
    }

    /// The fingerprint of choice `index` by `model`.
    pub fn seed_of(&self, model: &str, index: u32) -> u64 {
        let mut h = fnv1a(0xcbf2_9ce4_8422_2325, model.as_bytes());
        for text in &self.texts {
            h = fnv1a(h, text.as_bytes());
        }
        h = fnv1a(h, &index.to_le_bytes());
        fnv1a(h, &self.seed.to_le_bytes())
    }
}

/// The reply for choice `index` of `ask`, as `model`.
pub(crate) fn reply(ask: &Ask<'_>, model: &str, index: u32) -> Reply {
    let seed = ask.seed_of(model, index);
    let tokenizer = tokens::o200k();
    if let Some(call) = tool_call(ask, seed) {
        let tokens = tokenizer.count(call.function.name.as_str())
            + tokenizer.count(call.function.arguments.as_str());
        return Reply {
            content: None,
            tool_calls: Some(vec![call]),
            finish_reason: "tool_calls",
            stop_sequence: None,
            completion_tokens: tokens as u64 + 3,
        };
    }
    let mut text = prose(ask, model, seed);
    if let Some(schema) = &ask.json_schema {
        text = sample(schema, 0).to_string();
    }
    let mut finish_reason = "stop";
    let mut stop_sequence = None;
    for s in ask.stop.iter().filter(|s| !s.is_empty()) {
        if let Some(at) = text.find(s) {
            text.truncate(at);
            stop_sequence = Some((*s).to_owned());
        }
    }
    let mut tokens = tokenizer.encode(text.as_str());
    if let Some(max) = ask.max_tokens {
        if tokens.len() > max as usize {
            tokens.truncate(max as usize);
            text = tokenizer.decode(&tokens).unwrap_or_default();
            finish_reason = "length";
            stop_sequence = None;
        }
    }
    Reply {
        content: Some(text),
        tool_calls: None,
        finish_reason,
        stop_sequence,
        completion_tokens: tokens.len() as u64,
    }
}

fn prose(ask: &Ask<'_>, model: &str, seed: u64) -> String {
    let topic: Vec<&str> = ask
        .last_user
        .iter()
        .flat_map(|t| t.split_whitespace())
        .take(8)
        .collect();
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

/// What a JSON answer with no schema looks like: `{"answer": "simulated", "ok": true}`.
pub(crate) fn any_json_object() -> Value {
    json!({
        "type": "object",
        "properties": {"answer": {"enum": ["simulated"]}, "ok": {"type": "boolean"}}
    })
}

/// The schema a JSON-mode answer must satisfy (any object for `json_object`).
fn json_mode(request: &ChatRequest) -> Option<Value> {
    let format = request.response_format.as_ref()?;
    match format.get("type")?.as_str()? {
        "json_object" => Some(any_json_object()),
        "json_schema" => Some(
            format
                .pointer("/json_schema/schema")
                .cloned()
                .unwrap_or(Value::Null),
        ),
        _ => None,
    }
}

fn tool_call(ask: &Ask<'_>, seed: u64) -> Option<ToolCall> {
    if ask.tools.is_empty() || ask.after_tool_result {
        return None;
    }
    let (name, schema) = match ask.tool_choice {
        ToolChoice::None => return None,
        ToolChoice::Named(wanted) => *ask.tools.iter().find(|(name, _)| *name == wanted)?,
        ToolChoice::Auto => ask.tools[0],
    };
    Some(ToolCall {
        id: format!("call_{seed:016x}"),
        kind: "function".into(),
        function: FunctionCall {
            name: name.to_owned(),
            arguments: sample(schema, 0).to_string(),
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
    // Gemini's OpenAPI-style schemas spell types in capitals (`STRING`).
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_ascii_lowercase();
    match kind.as_str() {
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
