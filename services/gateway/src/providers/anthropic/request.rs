//! OpenAI chat request → Anthropic Messages request.
//!
//! - `system` / `developer` messages are lifted, in order, into the top-level
//!   `system` (Anthropic has no system turns);
//! - `tool` messages become `tool_result` blocks in a user turn, and
//!   consecutive turns of the same role are merged (Anthropic requires
//!   alternation), with tool results first in their turn as the API requires;
//! - assistant `tool_calls` become `tool_use` blocks (arguments parsed);
//! - images (data URLs and http(s) URLs) become image blocks;
//! - `max_tokens` is always set: the request's, else the model's maximum;
//! - `stop` → `stop_sequences`, `user` → `metadata.user_id`, `tool_choice`
//!   `none`/`auto`/`required`/named → `none`/`auto`/`any`/`tool`, and
//!   `parallel_tool_calls: false` → `disable_parallel_tool_use`;
//! - JSON mode (`response_format` json_object / json_schema) is carried as a
//!   forced tool whose input schema is the requested schema; the answer's
//!   tool input comes back as the message content;
//! - `thinking` and `top_k`, Anthropic's own fields, pass through.
//!
//! What Anthropic cannot carry is refused by [`check`] with the field's
//! name: `n` > 1, logprobs, logit bias, presence/frequency penalties,
//! temperature above 1, audio and file parts, and tools combined with JSON
//! mode. `seed` is dropped: it is a best-effort hint everywhere.

use anthropic::{
    Content, ContentBlock, ImageSource, Message as AMessage, MessagesRequest, Metadata,
    Role as ARole, System, Tool as ATool, ToolChoice,
};
use catalog::Model;
use openai::{ChatRequest, Content as OContent, ContentPart, Message, Role};
use serde_json::{json, Value};

use crate::providers::translate::{
    arguments, asks, check_messages, refuse, tool_output, MessageRules,
};
use crate::providers::Unsupported;

/// The name of the tool that carries JSON mode when the schema has none.
pub const JSON_TOOL: &str = "json_response";

/// OpenAI fields Anthropic has no equivalent for.
const REFUSED: [&str; 7] = [
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "audio",
    "prediction",
];

/// Refuses what Anthropic cannot carry faithfully, naming the field.
pub fn check(request: &ChatRequest) -> Result<(), Unsupported> {
    if request.n.unwrap_or(1) != 1 {
        return refuse("n", "Anthropic returns one choice only");
    }
    if request.temperature.is_some_and(|t| t > 1.0) {
        return refuse("temperature", "Anthropic accepts temperatures from 0 to 1");
    }
    if let Some(field) = REFUSED.into_iter().find(|f| asks(request, f)) {
        return refuse(field, format!("Anthropic does not support `{field}`"));
    }
    if json_mode(request).is_some() && request.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return refuse(
            "response_format",
            "Anthropic cannot combine tools with JSON mode",
        );
    }
    check_messages(
        request,
        &MessageRules {
            image: |url| image_source(url).is_ok(),
            image_refusal: "images must be base64 data URLs or http(s) URLs",
            results_need_call: false,
        },
    )
}

/// The requested JSON mode as (tool name, input schema), if any.
pub fn json_mode(request: &ChatRequest) -> Option<(String, Value)> {
    let format = request.response_format.as_ref()?;
    match format.get("type")?.as_str()? {
        "json_object" => Some((JSON_TOOL.to_owned(), json!({"type": "object"}))),
        "json_schema" => {
            let spec = format.get("json_schema")?;
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(JSON_TOOL);
            let schema = spec
                .get("schema")
                .cloned()
                .unwrap_or(json!({"type": "object"}));
            Some((name.to_owned(), schema))
        }
        _ => None,
    }
}

/// The Anthropic request for `request` on `model`. Call [`check`] first:
/// what it refuses is refused here too.
pub fn translate(
    model: &Model,
    request: &ChatRequest,
    stream: bool,
) -> Result<MessagesRequest, Unsupported> {
    let mut turns: Vec<AMessage> = Vec::new();
    for message in &request.messages {
        if matches!(message.role, Role::System | Role::Developer) {
            continue;
        }
        let role = if message.role == Role::Assistant {
            ARole::Assistant
        } else {
            ARole::User
        };
        let blocks = blocks_of(message)?;
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => {
                let Content::Blocks(existing) = &mut last.content else {
                    unreachable!("turns are built from blocks")
                };
                existing.extend(blocks);
            }
            _ => turns.push(AMessage {
                role,
                content: Content::Blocks(blocks),
            }),
        }
    }
    for turn in &mut turns {
        if let Content::Blocks(blocks) = &mut turn.content {
            // Stable: tool results first, everything else after, in order.
            blocks.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult { .. }));
        }
    }
    let (mut tools, mut tool_choice) = (tools_of(request), tool_choice_of(request));
    if let Some((name, schema)) = json_mode(request) {
        tools = Some(vec![ATool {
            name: name.clone(),
            description: Some("Answer with the requested JSON as this tool's input.".into()),
            input_schema: schema,
            extra: Default::default(),
        }]);
        tool_choice = Some(ToolChoice::Tool {
            name,
            disable_parallel_tool_use: None,
        });
    }
    Ok(MessagesRequest {
        model: model.provider_model_id.clone(),
        max_tokens: request
            .requested_output_tokens()
            .unwrap_or(model.max_output_tokens),
        messages: turns,
        system: system_of(request),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request
            .extra
            .get("top_k")
            .and_then(Value::as_u64)
            .map(|k| k as u32),
        stop_sequences: request
            .stop
            .as_ref()
            .map(|s| s.sequences().into_iter().map(str::to_owned).collect()),
        stream: stream.then_some(true),
        tools,
        tool_choice,
        metadata: request.user.as_ref().map(|user| Metadata {
            user_id: Some(user.clone()),
        }),
        thinking: request.extra.get("thinking").cloned(),
        extra: Default::default(),
    })
}

/// The Anthropic blocks of one OpenAI message.
fn blocks_of(message: &Message) -> Result<Vec<ContentBlock>, Unsupported> {
    let mut blocks = Vec::new();
    if message.role == Role::Tool {
        let Some(id) = &message.tool_call_id else {
            return Err(Unsupported {
                param: "messages",
                reason: "a `tool` message needs its `tool_call_id`".into(),
            });
        };
        let (text, _) = tool_output(message);
        blocks.push(ContentBlock::ToolResult {
            tool_use_id: id.clone(),
            content: Some(Content::Text(text)),
            is_error: None,
            extra: Default::default(),
        });
        return Ok(blocks);
    }
    if message.role == Role::Function {
        return Err(Unsupported {
            param: "messages",
            reason: "legacy `function` messages are not supported; use `tool` messages".into(),
        });
    }
    match &message.content {
        Some(OContent::Text(text)) if !text.is_empty() => blocks.push(ContentBlock::text(text)),
        Some(OContent::Parts(parts)) => {
            for part in parts {
                blocks.push(part_block(part)?);
            }
        }
        _ => {}
    }
    for call in message.tool_calls.iter().flatten() {
        let input = arguments(call)?;
        blocks.push(ContentBlock::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input,
            extra: Default::default(),
        });
    }
    Ok(blocks)
}

fn part_block(part: &ContentPart) -> Result<ContentBlock, Unsupported> {
    match part {
        ContentPart::Text {
            text,
            cache_control,
        } => Ok(text_block(text, cache_control.as_ref())),
        ContentPart::Refusal { refusal: text } => Ok(ContentBlock::text(text)),
        ContentPart::ImageUrl { image_url } => Ok(ContentBlock::Image {
            source: image_source(&image_url.url)?,
            extra: Default::default(),
        }),
        ContentPart::InputAudio { .. } | ContentPart::File { .. } => Err(Unsupported {
            param: "messages",
            reason: "Anthropic takes text and image parts only".into(),
        }),
    }
}

/// A text block, with its prompt-cache breakpoint if the part has one.
fn text_block(text: &str, cache_control: Option<&Value>) -> ContentBlock {
    let mut extra = anthropic::Extra::new();
    if let Some(cache) = cache_control {
        extra.insert("cache_control".into(), cache.clone());
    }
    ContentBlock::Text {
        text: text.to_owned(),
        extra,
    }
}

/// The top-level system prompt: one string, or text blocks when any part
/// sets a prompt-cache breakpoint (which only blocks can carry).
fn system_of(request: &ChatRequest) -> Option<System> {
    let system = request
        .messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer));
    let cached = system.clone().any(|m| match &m.content {
        Some(OContent::Parts(parts)) => parts.iter().any(
            |p| matches!(p, ContentPart::Text { cache_control, .. } if cache_control.is_some()),
        ),
        _ => false,
    });
    if !cached {
        let texts: Vec<&str> = system.flat_map(Message::texts).collect();
        return (!texts.is_empty()).then(|| System::Text(texts.join("\n\n")));
    }
    let blocks = system
        .flat_map(|m| match &m.content {
            Some(OContent::Text(text)) => vec![ContentBlock::text(text)],
            Some(OContent::Parts(parts)) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text {
                        text,
                        cache_control,
                    } => Some(text_block(text, cache_control.as_ref())),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        })
        .collect();
    Some(System::Blocks(blocks))
}

/// `data:<media type>;base64,<data>` or an http(s) URL.
fn image_source(url: &str) -> Result<ImageSource, Unsupported> {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((media_type, data)) = rest.split_once(";base64,") {
            return Ok(ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            });
        }
    } else if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url {
            url: url.to_owned(),
        });
    }
    Err(Unsupported {
        param: "messages",
        reason: "images must be base64 data URLs or http(s) URLs".into(),
    })
}

fn tools_of(request: &ChatRequest) -> Option<Vec<ATool>> {
    let tools = request.tools.as_ref().filter(|t| !t.is_empty())?;
    Some(
        tools
            .iter()
            .map(|tool| ATool {
                name: tool.function.name.clone(),
                description: tool.function.description.clone(),
                input_schema: tool
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                extra: tool
                    .cache_control
                    .iter()
                    .map(|c| ("cache_control".to_owned(), c.clone()))
                    .collect(),
            })
            .collect(),
    )
}

fn tool_choice_of(request: &ChatRequest) -> Option<ToolChoice> {
    let serial = request
        .extra
        .get("parallel_tool_calls")
        .and_then(Value::as_bool)
        .map(|parallel| !parallel)
        .filter(|&serial| serial);
    let choice = match &request.tool_choice {
        None => {
            return serial.map(|_| ToolChoice::Auto {
                disable_parallel_tool_use: serial,
            })
        }
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::String(s)) if s == "required" => ToolChoice::Any {
            disable_parallel_tool_use: serial,
        },
        Some(choice) => match choice.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Tool {
                name: name.to_owned(),
                disable_parallel_tool_use: serial,
            },
            None => ToolChoice::Auto {
                disable_parallel_tool_use: serial,
            },
        },
    };
    Some(choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{keys, request, with};
    use catalog::Catalog;

    fn out(value: Value) -> Value {
        let catalog = Catalog::builtin();
        let model = catalog.model("claude-sonnet-4-6").unwrap();
        let r = request(value);
        check(&r).expect("carried");
        serde_json::to_value(translate(model, &r, false).unwrap()).unwrap()
    }

    #[test]
    fn each_field_has_its_anthropic_counterpart() {
        let tool = json!({"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}});
        let bare_tool = json!({"type": "function", "function": {"name": "g"}});
        let cases = [
            (json!({}), "/max_tokens", json!(64_000)),
            (json!({"max_tokens": 10}), "/max_tokens", json!(10)),
            (
                json!({"max_completion_tokens": 12, "max_tokens": 10}),
                "/max_tokens",
                json!(12),
            ),
            (json!({"temperature": 0.3}), "/temperature", json!(0.3)),
            (json!({"top_p": 0.5}), "/top_p", json!(0.5)),
            (json!({"top_k": 40}), "/top_k", json!(40)),
            (json!({"stop": "END"}), "/stop_sequences", json!(["END"])),
            (
                json!({"stop": ["a", "b"]}),
                "/stop_sequences",
                json!(["a", "b"]),
            ),
            (json!({"user": "u"}), "/metadata", json!({"user_id": "u"})),
            (
                json!({"tools": [tool]}),
                "/tools/0",
                json!({"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}),
            ),
            (
                json!({"tools": [bare_tool]}),
                "/tools/0/input_schema",
                json!({"type": "object", "properties": {}}),
            ),
            (
                json!({"tool_choice": "auto"}),
                "/tool_choice",
                json!({"type": "auto"}),
            ),
            (
                json!({"tool_choice": "none"}),
                "/tool_choice",
                json!({"type": "none"}),
            ),
            (
                json!({"tool_choice": "required"}),
                "/tool_choice",
                json!({"type": "any"}),
            ),
            (
                json!({"tool_choice": {"type": "function", "function": {"name": "f"}}}),
                "/tool_choice",
                json!({"type": "tool", "name": "f"}),
            ),
            (
                json!({"parallel_tool_calls": false}),
                "/tool_choice",
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            ),
            (
                json!({"tool_choice": "required", "parallel_tool_calls": false}),
                "/tool_choice",
                json!({"type": "any", "disable_parallel_tool_use": true}),
            ),
            (
                json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
                "/thinking",
                json!({"type": "enabled", "budget_tokens": 2048}),
            ),
            (
                json!({"response_format": {"type": "json_object"}}),
                "/tool_choice",
                json!({"type": "tool", "name": JSON_TOOL}),
            ),
            (
                json!({"model": "claude-sonnet-4-6"}),
                "/model",
                json!("claude-sonnet-4-6"),
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
        // Nothing OpenAI-only leaks into the Anthropic body.
        let translated = out(with(
            json!({"seed": 3, "store": true, "parallel_tool_calls": true, "prefer": "cheap"}),
        ));
        assert_eq!(keys(&translated), ["max_tokens", "messages", "model"]);
    }

    #[test]
    fn tool_results_come_first_in_their_merged_turn() {
        let translated = out(json!({"model": "standard", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "Calling.", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
            {"role": "user", "content": "and also"},
            {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "done"}]}
        ]}));
        assert_eq!(
            translated["messages"][1]["content"],
            json!([{"type": "text", "text": "Calling."}, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}])
        );
        assert_eq!(
            translated["messages"][2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "t1", "content": "done"}, {"type": "text", "text": "and also"}])
        );
    }

    #[test]
    fn what_cannot_be_carried_is_refused_by_field() {
        let refusals = [
            (with(json!({"n": 3})), "n"),
            (with(json!({"temperature": 1.2})), "temperature"),
            (with(json!({"logprobs": true})), "logprobs"),
            (with(json!({"top_logprobs": 2})), "top_logprobs"),
            (with(json!({"logit_bias": {"1": 5}})), "logit_bias"),
            (with(json!({"presence_penalty": 0.1})), "presence_penalty"),
            (
                with(json!({"frequency_penalty": -0.1})),
                "frequency_penalty",
            ),
            (
                with(
                    json!({"tools": [{"type": "function", "function": {"name": "f"}}], "response_format": {"type": "json_object"}}),
                ),
                "response_format",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}),
                "messages",
            ),
        ];
        for (value, param) in refusals {
            let error = check(&request(value.clone())).expect_err("refused");
            assert_eq!(error.param, param, "{value}");
        }
        // Defaults are not refusals.
        for fine in [
            json!({"n": 1}),
            json!({"logprobs": false}),
            json!({"presence_penalty": 0}),
            json!({"temperature": 1.0}),
        ] {
            assert!(check(&request(with(fine.clone()))).is_ok(), "{fine}");
        }
    }
}
