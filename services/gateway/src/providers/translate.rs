//! What the translating adapters (Anthropic, Gemini, Bedrock) share: how a
//! refusal is made, when a field asks for something, tool-call arguments and
//! tool outputs, and the OpenAI chunks a translated stream is made of.

use std::time::{SystemTime, UNIX_EPOCH};

use openai::{
    ChatCompletionChunk, ChatRequest, ChunkChoice, Content, ContentPart, Delta, Extra, Message,
    PromptTokensDetails, Role, ToolCall, ToolCallDelta, Usage,
};
use serde::de::IgnoredAny;
use serde_json::{json, Value};

use super::{EmbedInput, Unsupported};

/// Refuses `param` for `reason`.
pub fn refuse<T>(param: &'static str, reason: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported {
        param,
        reason: reason.into(),
    })
}

/// Whether the request sets `field` (one the typed request does not model)
/// to something other than "off": `true`, a non-zero number, a non-empty
/// object, any string or list.
pub fn asks(request: &ChatRequest, field: &str) -> bool {
    match request.extra.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    }
}

/// What a translating adapter accepts in the messages.
pub struct MessageRules {
    /// Whether an image URL can be carried.
    pub image: fn(&str) -> bool,
    /// Why other image URLs cannot.
    pub image_refusal: &'static str,
    /// Tool results must answer an earlier call (Gemini names results after their call).
    pub results_need_call: bool,
}

/// Refuses, naming `messages`, what the translation of the messages would
/// refuse, without building it: routing checks every candidate, and a long
/// conversation should not be copied once per candidate to be checked.
pub fn check_messages(request: &ChatRequest, rules: &MessageRules) -> Result<(), Unsupported> {
    let mut calls: Vec<&str> = Vec::new();
    for message in &request.messages {
        match message.role {
            Role::Function => {
                return refuse(
                    "messages",
                    "legacy `function` messages are not supported; use `tool` messages",
                )
            }
            Role::Tool => match message.tool_call_id.as_deref() {
                None => return refuse("messages", "a `tool` message needs its `tool_call_id`"),
                Some(id) if rules.results_need_call && !calls.contains(&id) => {
                    return refuse(
                        "messages",
                        format!("tool result `{id}` answers no earlier tool call"),
                    )
                }
                Some(_) => {}
            },
            _ => {}
        }
        for call in message.tool_calls.iter().flatten() {
            calls.push(&call.id);
            let text = call.function.arguments.trim();
            if !text.is_empty() && serde_json::from_str::<IgnoredAny>(text).is_err() {
                arguments(call)?;
            }
        }
        if let Some(Content::Parts(parts)) = &message.content {
            for part in parts {
                match part {
                    ContentPart::ImageUrl { image_url } if !(rules.image)(&image_url.url) => {
                        return refuse("messages", rules.image_refusal)
                    }
                    ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
                        return refuse("messages", "only text and image parts can be carried here")
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// A tool call's arguments as JSON (none at all is `{}`); arguments that are
/// not JSON are refused, naming `messages`.
pub fn arguments(call: &ToolCall) -> Result<Value, Unsupported> {
    let text = call.function.arguments.trim();
    if text.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(text).or_else(|e| {
        refuse(
            "messages",
            format!(
                "the arguments of tool call `{}` are not valid JSON: {e}",
                call.id
            ),
        )
    })
}

/// A `tool` message's output: its text, and the text as a JSON object when it is one.
pub fn tool_output(message: &Message) -> (String, Option<Value>) {
    let text = message.texts().collect::<Vec<_>>().join("\n");
    let object = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => Some(object),
        _ => None,
    };
    (text, object)
}

/// OpenAI usage from counts where cache reads and writes are reported apart
/// from the other input (Anthropic, Bedrock): all three make up
/// `prompt_tokens`, reads are `cached_tokens`, writes are reported as
/// [`openai::CACHE_WRITE_TOKENS`] so they bill at the cache-write rate.
pub fn usage(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Usage {
    let prompt = input + cache_read + cache_write;
    let mut extra = Extra::new();
    if cache_write > 0 {
        extra.insert(openai::CACHE_WRITE_TOKENS.into(), cache_write.into());
    }
    Usage {
        prompt_tokens: prompt,
        completion_tokens: output,
        total_tokens: prompt + output,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: cache_read,
            extra: Extra::new(),
        }),
        completion_tokens_details: None,
        extra,
    }
}

/// Seconds since the Unix epoch, for `created`.
/// The text of an embedding input, for a model that embeds text only
/// (token ids belong to OpenAI's tokenizers).
pub fn embed_text<'a>(
    model: &catalog::EmbeddingModel,
    input: &'a EmbedInput,
) -> Result<&'a str, Unsupported> {
    match input {
        EmbedInput::Text(text) => Ok(text),
        EmbedInput::Tokens(_) => refuse(
            "input",
            format!(
                "`{}` takes text; token-id input is accepted by OpenAI embedding models only",
                model.id
            ),
        ),
    }
}

/// Refuses token-id input for a model that embeds text only.
pub fn check_text_only(model: &catalog::EmbeddingModel, tokens: bool) -> Result<(), Unsupported> {
    match tokens {
        true => embed_text(model, &EmbedInput::Tokens(Vec::new())).map(drop),
        false => Ok(()),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Makes the OpenAI chunks of one translated stream (one choice).
#[derive(Debug, Clone, Default)]
pub struct Chunks {
    pub id: String,
    pub model: String,
    pub created: i64,
}

impl Chunks {
    /// A chunk carrying `delta` (and `finish_reason`).
    pub fn delta(&self, delta: Delta, finish_reason: Option<String>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                extra: Extra::new(),
            }],
            usage: None,
            extra: Extra::new(),
        }
    }

    /// The first chunk: the assistant role, empty content.
    pub fn role(&self) -> ChatCompletionChunk {
        self.delta(
            Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                ..Default::default()
            },
            None,
        )
    }

    /// A piece of content.
    pub fn text(&self, text: String) -> ChatCompletionChunk {
        self.delta(
            Delta {
                content: Some(text),
                ..Default::default()
            },
            None,
        )
    }

    /// A piece of a tool call.
    pub fn tool(&self, call: ToolCallDelta) -> ChatCompletionChunk {
        self.delta(
            Delta {
                tool_calls: Some(vec![call]),
                ..Default::default()
            },
            None,
        )
    }

    /// The closing chunk: no choices, the usage.
    pub fn usage(&self, usage: Usage) -> ChatCompletionChunk {
        let mut last = self.delta(Delta::default(), None);
        last.choices.clear();
        last.usage = Some(usage);
        last
    }
}
