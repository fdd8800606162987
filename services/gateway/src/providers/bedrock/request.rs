//! OpenAI chat request → Bedrock Converse request.
//!
//! - `system` / `developer` messages → `system` text blocks;
//! - `tool` messages → `toolResult` blocks in a user turn (a JSON-object
//!   result as `json`, anything else as `text`), and consecutive turns of one
//!   role merged (Converse requires alternation);
//! - assistant `tool_calls` → `toolUse` blocks (arguments parsed);
//! - images: base64 data URLs of png / jpeg / gif / webp → image blocks;
//! - `max_tokens` (else the model's maximum), `temperature`, `top_p`, `stop`
//!   → `inferenceConfig`;
//! - tools → `toolSpec`s; `tool_choice` auto/required/named →
//!   `auto`/`any`/`tool`.
//!
//! - `cache_control` marks (on text parts and tools) become cache points
//!   after what they mark, for models whose catalog entry has cache prices
//!   (Claude and Nova on Bedrock); other models get none.
//!
//! `seed` and `user` are dropped. Refused by [`check`], naming the field:
//! `n` > 1, temperature above 1, `top_k` (model-specific on Bedrock),
//! logprobs, logit bias, presence/frequency penalties, `tool_choice: none`
//! (Converse has no such choice), audio and file parts, image URLs that are
//! not data URLs. JSON mode is refused earlier: no Bedrock model in the
//! catalog has the `json_mode` capability.

use bedrock::{
    CachePoint, ContentBlock, ConverseRequest, Empty, ImageBlock, ImageSource, InferenceConfig,
    InputSchema, Message as BMessage, NamedTool, SystemBlock, Tool, ToolChoice, ToolConfig,
    ToolResultBlock, ToolResultContent, ToolSpec, ToolUseBlock,
};
use catalog::Model;
use openai::{ChatRequest, Content, ContentPart, Message, Role};
use serde_json::{json, Value};

use crate::providers::translate::{
    arguments, asks, check_messages, refuse, tool_output, MessageRules,
};
use crate::providers::Unsupported;

/// Refuses what Converse cannot carry faithfully, naming the field.
pub fn check(request: &ChatRequest) -> Result<(), Unsupported> {
    if request.n.unwrap_or(1) != 1 {
        return refuse("n", "Bedrock returns one choice only");
    }
    if request.temperature.is_some_and(|t| t > 1.0) {
        return refuse("temperature", "Bedrock accepts temperatures from 0 to 1");
    }
    // `top_k` in any form: its name and range differ between Bedrock's models.
    if request.extra.get("top_k").is_some_and(|v| !v.is_null()) {
        return refuse("top_k", "Bedrock's Converse API does not support `top_k`");
    }
    let refused = [
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "audio",
    ];
    if let Some(field) = refused.into_iter().find(|f| asks(request, f)) {
        return refuse(
            field,
            format!("Bedrock's Converse API does not support `{field}`"),
        );
    }
    if matches!(&request.tool_choice, Some(Value::String(s)) if s == "none") {
        return refuse("tool_choice", "Bedrock has no `none` tool choice");
    }
    check_messages(
        request,
        &MessageRules {
            image: |url| image_format(url).is_some(),
            image_refusal: "Bedrock takes images as base64 data URLs of png, jpeg, gif or webp",
            results_need_call: false,
        },
    )
}

/// The Converse request for `request`. Call [`check`] first.
pub fn translate(model: &Model, request: &ChatRequest) -> Result<ConverseRequest, Unsupported> {
    let caches = Caches(caches(model));
    let (system, messages) = turns(request, caches)?;
    Ok(ConverseRequest {
        messages,
        system: (!system.is_empty()).then_some(system),
        inference_config: Some(InferenceConfig {
            max_tokens: Some(
                request
                    .requested_output_tokens()
                    .unwrap_or(model.max_output_tokens),
            ),
            temperature: request.temperature,
            top_p: request.top_p,
            stop_sequences: request
                .stop
                .as_ref()
                .map(|s| s.sequences().into_iter().map(str::to_owned).collect()),
        }),
        tool_config: tool_config(request, caches),
        additional_model_request_fields: None,
        extra: Default::default(),
    })
}

/// Whether the model caches prompts (its catalog entry has cache prices):
/// then `cache_control` marks become Converse cache points; other models
/// would refuse them.
fn caches(model: &Model) -> bool {
    let rates = model.pricing.base;
    rates.cached_input.is_some() || rates.cache_write.is_some()
}

/// Whether cache points are sent (see [`caches`]).
#[derive(Debug, Clone, Copy)]
struct Caches(bool);

impl Caches {
    /// Whether a part marked `cache_control` gets a cache point after it.
    fn after(self, part: &ContentPart) -> bool {
        self.0
            && matches!(
                part,
                ContentPart::Text {
                    cache_control: Some(_),
                    ..
                }
            )
    }
}

fn system_blocks(message: &Message, caches: Caches) -> Vec<SystemBlock> {
    let parts = match &message.content {
        Some(Content::Text(text)) => return vec![SystemBlock::Text(text.clone())],
        Some(Content::Parts(parts)) => parts,
        None => return Vec::new(),
    };
    let mut blocks = Vec::new();
    for part in parts {
        if let ContentPart::Text { text, .. } = part {
            blocks.push(SystemBlock::Text(text.clone()));
        }
        if caches.after(part) {
            blocks.push(SystemBlock::CachePoint(CachePoint::default()));
        }
    }
    blocks
}

fn turns(
    request: &ChatRequest,
    caches: Caches,
) -> Result<(Vec<SystemBlock>, Vec<BMessage>), Unsupported> {
    let mut system = Vec::new();
    let mut messages: Vec<BMessage> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message.role {
            Role::System | Role::Developer => {
                system.extend(system_blocks(message, caches));
                continue;
            }
            Role::Assistant => ("assistant", assistant_blocks(message)?),
            Role::Tool => ("user", vec![tool_result(message)?]),
            Role::User => ("user", user_blocks(message, caches)?),
            Role::Function => {
                return refuse(
                    "messages",
                    "legacy `function` messages are not supported; use `tool` messages",
                )
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(BMessage {
                role: role.into(),
                content: blocks,
            }),
        }
    }
    Ok((system, messages))
}

fn user_blocks(message: &Message, caches: Caches) -> Result<Vec<ContentBlock>, Unsupported> {
    let parts = match &message.content {
        Some(Content::Text(text)) => return Ok(vec![ContentBlock::Text(text.clone())]),
        Some(Content::Parts(parts)) => parts,
        None => return Ok(Vec::new()),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for p in parts {
        blocks.push(part(p)?);
        if caches.after(p) {
            blocks.push(ContentBlock::CachePoint(CachePoint::default()));
        }
    }
    Ok(blocks)
}

fn part(part: &ContentPart) -> Result<ContentBlock, Unsupported> {
    match part {
        ContentPart::Text { text, .. } | ContentPart::Refusal { refusal: text } => {
            Ok(ContentBlock::Text(text.clone()))
        }
        ContentPart::ImageUrl { image_url } => match image_format(&image_url.url) {
            Some((format, data)) => Ok(ContentBlock::Image(ImageBlock {
                format: format.into(),
                source: ImageSource { bytes: data.into() },
            })),
            None => refuse(
                "messages",
                "Bedrock takes images as base64 data URLs of png, jpeg, gif or webp",
            ),
        },
        ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
            refuse("messages", "Bedrock takes text and image parts here")
        }
    }
}

/// The format and base64 data of an image data URL Bedrock can take.
fn image_format(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:image/")
        .and_then(|rest| rest.split_once(";base64,"))
        .filter(|(format, _)| matches!(*format, "png" | "jpeg" | "gif" | "webp"))
}

fn assistant_blocks(message: &Message) -> Result<Vec<ContentBlock>, Unsupported> {
    let mut blocks: Vec<ContentBlock> = message
        .texts()
        .filter(|t| !t.is_empty())
        .map(|t| ContentBlock::Text(t.to_owned()))
        .collect();
    for call in message.tool_calls.iter().flatten() {
        let input = arguments(call)?;
        blocks.push(ContentBlock::ToolUse(ToolUseBlock {
            tool_use_id: call.id.clone(),
            name: call.function.name.clone(),
            input,
        }));
    }
    Ok(blocks)
}

fn tool_result(message: &Message) -> Result<ContentBlock, Unsupported> {
    let Some(id) = &message.tool_call_id else {
        return refuse("messages", "a `tool` message needs its `tool_call_id`");
    };
    let (text, object) = tool_output(message);
    let content = object.map_or(ToolResultContent::Text(text), ToolResultContent::Json);
    Ok(ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: id.clone(),
        content: vec![content],
        status: None,
    }))
}

fn tool_config(request: &ChatRequest, caches: Caches) -> Option<ToolConfig> {
    let tools = request.tools.as_ref().filter(|t| !t.is_empty())?;
    let tool_choice = match &request.tool_choice {
        Some(Value::String(s)) if s == "required" => Some(ToolChoice::Any(Empty {})),
        Some(Value::String(_)) => Some(ToolChoice::Auto(Empty {})),
        Some(choice) => choice
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|name| {
                ToolChoice::Tool(NamedTool {
                    name: name.to_owned(),
                })
            }),
        None => None,
    };
    Some(ToolConfig {
        tools: tools
            .iter()
            .flat_map(|t| {
                let spec = Tool::ToolSpec(ToolSpec {
                    name: t.function.name.clone(),
                    description: t.function.description.clone(),
                    input_schema: InputSchema {
                        json: t
                            .function
                            .parameters
                            .clone()
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    },
                });
                let point = (caches.0 && t.cache_control.is_some())
                    .then(|| Tool::CachePoint(CachePoint::default()));
                std::iter::once(spec).chain(point)
            })
            .collect(),
        tool_choice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{keys, request, with};
    use catalog::Catalog;

    fn out(value: Value) -> Value {
        let catalog = Catalog::builtin();
        let r = request(value);
        check(&r).expect("carried");
        serde_json::to_value(translate(catalog.model("deepseek.v3.2").unwrap(), &r).unwrap())
            .unwrap()
    }

    #[test]
    fn each_field_has_its_converse_counterpart() {
        let tool = json!({"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}});
        let cases = [
            (json!({}), "/inferenceConfig/maxTokens", json!(32768)),
            (
                json!({"max_tokens": 7}),
                "/inferenceConfig/maxTokens",
                json!(7),
            ),
            (
                json!({"stop": "END"}),
                "/inferenceConfig/stopSequences",
                json!(["END"]),
            ),
            (
                json!({"tools": [tool]}),
                "/toolConfig/tools/0",
                json!({"toolSpec": {"name": "f", "description": "d", "inputSchema": {"json": {"type": "object"}}}}),
            ),
            (
                json!({"tools": [tool], "tool_choice": "auto"}),
                "/toolConfig/toolChoice",
                json!({"auto": {}}),
            ),
            (
                json!({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "f"}}}),
                "/toolConfig/toolChoice",
                json!({"tool": {"name": "f"}}),
            ),
        ];
        for (fields, pointer, expected) in cases {
            let translated = out(with(fields.clone()));
            assert_eq!(
                translated.pointer(pointer),
                Some(&expected),
                "{fields} → {translated}"
            );
        }
        let translated = out(with(
            json!({"seed": 1, "user": "u", "n": 1, "presence_penalty": 0}),
        ));
        assert_eq!(keys(&translated), ["inferenceConfig", "messages"]);
    }

    #[test]
    fn a_json_object_tool_result_goes_as_json() {
        let translated = out(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "{\"temp\": 4}"}
        ]}));
        assert_eq!(
            translated["messages"][2]["content"][0],
            json!({"toolResult": {"toolUseId": "a", "content": [{"json": {"temp": 4}}]}})
        );
    }

    #[test]
    fn what_cannot_be_carried_is_refused_by_field() {
        for (value, param) in [
            (with(json!({"n": 2})), "n"),
            (with(json!({"temperature": 1.1})), "temperature"),
            (with(json!({"top_k": 0})), "top_k"),
            (with(json!({"logit_bias": {"1": 1}})), "logit_bias"),
            (with(json!({"frequency_penalty": 0.3})), "frequency_penalty"),
            (with(json!({"tool_choice": "none"})), "tool_choice"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}]}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages",
            ),
        ] {
            assert_eq!(
                check(&request(value.clone())).unwrap_err().param,
                param,
                "{value}"
            );
        }
    }
}
