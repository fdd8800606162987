//! Anthropic Messages ↔ chat: the request in, the answer and its stream out.
//!
//! In: `system` (string or text blocks) becomes a system message; user
//! turns' text and image blocks become parts, their `tool_result` blocks
//! `tool` messages (placed first, as chat requires them right after the
//! call); assistant turns' `tool_use` blocks become `tool_calls`; thinking
//! blocks of earlier turns are dropped (only Anthropic could read their
//! signatures). `cache_control` on text blocks, system blocks and tools is
//! kept, so Anthropic upstreams cache and bill at cache rates. `tools`,
//! `tool_choice`, `stop_sequences`, `metadata.user_id`, `temperature`,
//! `top_p`, `top_k` and `thinking` map to their chat counterparts; `prefer`
//! and `models` are read as on chat.
//!
//! Out: one text block, thinking (when the model gives it) first, tool
//! calls as `tool_use` blocks; `usage` in Anthropic's split (input without
//! cache reads and writes) plus `cost`; the stream as `message_start`,
//! content blocks, `message_delta` (stop reason, usage) and `message_stop`.

use anthropic::{
    BlockDelta, Content, ContentBlock, DeltaUsage, ErrorDetail, ErrorResponse, ImageSource,
    MessageDeltaBody, MessagesRequest, MessagesResponse, Role as ARole, StreamEvent, System,
    ToolChoice, Usage as AUsage,
};
use axum::body::Bytes;
use openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, Content as OContent, ContentPart,
    FunctionCall, FunctionDef, ImageUrl, Message, Role, Stop, Tool, ToolCall, Usage,
};
use serde_json::Value;

use crate::dispatch::relay::sse_event;
use crate::dispatch::{Encoder, Relayed};
use crate::error::GatewayError;

/// The chat request carrying `request`; refuses what chat cannot carry,
/// naming the field.
pub fn to_chat(mut request: MessagesRequest) -> Result<ChatRequest, GatewayError> {
    if request.max_tokens == 0 {
        return Err(invalid("max_tokens: must be at least 1", "max_tokens"));
    }
    if request.messages.is_empty() {
        return Err(invalid(
            "messages: at least one message is required",
            "messages",
        ));
    }
    if request.extra.contains_key("mcp_servers") {
        return Err(invalid(
            "mcp_servers: the router does not run Anthropic's MCP connector; define the tools yourself",
            "mcp_servers",
        ));
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system.take() {
        messages.push(system_message(system));
    }
    for (i, turn) in request.messages.into_iter().enumerate() {
        match turn.role {
            ARole::User => user_turn(turn.content, i, &mut messages)?,
            ARole::Assistant => messages.push(assistant_turn(turn.content, i)?),
        }
    }
    let mut extra = openai::Extra::new();
    let mut take = |name: &str| request.extra.remove(name).filter(|v| !v.is_null());
    let prefer = take("prefer").and_then(|v| v.as_str().map(str::to_owned));
    let models = match take("models") {
        Some(v) => Some(
            serde_json::from_value(v)
                .map_err(|_| invalid("models: must be a list of model names", "models"))?,
        ),
        None => None,
    };
    if let Some(k) = request.top_k {
        extra.insert("top_k".into(), k.into());
    }
    if let Some(thinking) = request.thinking.filter(|t| !t.is_null()) {
        extra.insert("thinking".into(), thinking);
    }
    let (tool_choice, serial) = tool_choice(request.tool_choice);
    if serial {
        extra.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    Ok(ChatRequest {
        model: request.model,
        models,
        messages,
        stream: request.stream,
        stream_options: None,
        max_tokens: Some(request.max_tokens),
        max_completion_tokens: None,
        temperature: request.temperature,
        top_p: request.top_p,
        n: None,
        stop: request.stop_sequences.map(Stop::Many),
        seed: None,
        user: request.metadata.and_then(|m| m.user_id),
        tools: tools(request.tools),
        tool_choice,
        response_format: None,
        prefer,
        extra,
    })
}

fn invalid(message: &str, param: &str) -> GatewayError {
    GatewayError::invalid(message, Some(param.to_owned()))
}

fn system_message(system: System) -> Message {
    let content = match system {
        System::Text(text) => OContent::Text(text),
        System::Blocks(blocks) => OContent::Parts(
            blocks
                .into_iter()
                .filter_map(|block| match block {
                    ContentBlock::Text { text, mut extra } => Some(ContentPart::Text {
                        text,
                        cache_control: extra.remove("cache_control"),
                    }),
                    _ => None,
                })
                .collect(),
        ),
    };
    Message::new(Role::System, Some(content))
}

/// A user turn: its tool results as `tool` messages, then the rest as one
/// user message.
fn user_turn(content: Content, turn: usize, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let blocks = match content {
        Content::Text(text) => {
            out.push(Message::new(Role::User, Some(OContent::Text(text))));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text { text, mut extra } => parts.push(ContentPart::Text {
                text,
                cache_control: extra.remove("cache_control"),
            }),
            ContentBlock::Image { source, .. } => parts.push(ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: match source {
                        ImageSource::Base64 { media_type, data } => {
                            format!("data:{media_type};base64,{data}")
                        }
                        ImageSource::Url { url } => url,
                    },
                    detail: None,
                },
            }),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                let mut text = content.map(|c| c.texts().join("\n")).unwrap_or_default();
                if is_error == Some(true) {
                    text.insert_str(0, "Error: ");
                }
                let mut result = Message::new(Role::Tool, Some(OContent::Text(text)));
                result.tool_call_id = Some(tool_use_id);
                out.push(result);
            }
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::ToolUse { .. } | ContentBlock::Unknown => {
                return Err(unsupported_block(turn));
            }
        }
    }
    if !parts.is_empty() {
        out.push(Message::new(Role::User, Some(OContent::Parts(parts))));
    }
    Ok(())
}

fn unsupported_block(turn: usize) -> GatewayError {
    invalid(
        &format!(
            "messages.{turn}.content: the router accepts text, image, tool_use (assistant), tool_result (user) and thinking blocks; this block type is not supported"
        ),
        "messages",
    )
}

/// An assistant turn: its text, and its `tool_use` blocks as tool calls.
fn assistant_turn(content: Content, turn: usize) -> Result<Message, GatewayError> {
    let blocks = match content {
        Content::Text(text) => {
            return Ok(Message::new(Role::Assistant, Some(OContent::Text(text))))
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text { text: t, .. } => text.push_str(&t),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            _ => return Err(unsupported_block(turn)),
        }
    }
    let mut out = Message::new(
        Role::Assistant,
        (!text.is_empty() || calls.is_empty()).then_some(OContent::Text(text)),
    );
    out.tool_calls = (!calls.is_empty()).then_some(calls);
    Ok(out)
}

fn tools(tools: Option<Vec<anthropic::Tool>>) -> Option<Vec<Tool>> {
    let tools = tools.filter(|t| !t.is_empty())?;
    Some(
        tools
            .into_iter()
            .map(|mut tool| Tool {
                kind: "function".into(),
                cache_control: tool.extra.remove("cache_control"),
                function: FunctionDef {
                    name: tool.name,
                    description: tool.description,
                    parameters: Some(tool.input_schema),
                    strict: None,
                },
            })
            .collect(),
    )
}

/// Chat's `tool_choice`, and whether parallel calls were disabled.
fn tool_choice(choice: Option<ToolChoice>) -> (Option<Value>, bool) {
    let Some(choice) = choice else {
        return (None, false);
    };
    let (value, serial) = match choice {
        ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (Value::from("auto"), disable_parallel_tool_use),
        ToolChoice::Any {
            disable_parallel_tool_use,
        } => (Value::from("required"), disable_parallel_tool_use),
        ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            serde_json::json!({"type": "function", "function": {"name": name}}),
            disable_parallel_tool_use,
        ),
        ToolChoice::None => (Value::from("none"), None),
    };
    (Some(value), serial == Some(true))
}

/// Anthropic's `stop_reason` for chat's `finish_reason`.
fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage for chat's: input without cache reads and writes,
/// which are counted apart; the cost kept as `cost`.
fn usage(usage: &Usage) -> AUsage {
    let cached = usage.cached_tokens();
    let written = usage.cache_write_tokens();
    let mut extra = anthropic::Extra::new();
    if let Some(cost) = usage.extra.get("cost") {
        extra.insert("cost".into(), cost.clone());
    }
    AUsage {
        input_tokens: usage.prompt_tokens.saturating_sub(cached + written),
        output_tokens: usage.completion_tokens,
        cache_creation_input_tokens: Some(written),
        cache_read_input_tokens: Some(cached),
        extra,
    }
}

/// A message id: the upstream's when it is Anthropic's, else a new one.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        super::new_id("msg_")
    }
}

/// The Messages response for a whole completion.
pub fn response(mut completion: ChatCompletion) -> MessagesResponse {
    let answer = super::Answer::of(&mut completion);
    let mut content = Vec::new();
    if let Some(thinking) = answer.reasoning {
        content.push(ContentBlock::Thinking {
            thinking,
            signature: String::new(),
        });
    }
    content.extend(answer.text.map(ContentBlock::text));
    content.extend(answer.calls.into_iter().map(|call| ContentBlock::ToolUse {
        id: call.id,
        input: super::arguments_object(&call.function.arguments),
        name: call.function.name,
        extra: Default::default(),
    }));
    let finish = answer.finish;
    MessagesResponse {
        id: message_id(&completion.id),
        kind: "message".into(),
        role: ARole::Assistant,
        model: completion.model,
        content,
        stop_reason: Some(stop_reason(finish.as_deref()).to_owned()),
        stop_sequence: None,
        usage: completion.usage.as_ref().map(usage).unwrap_or_default(),
        extra: Default::default(),
    }
}

/// The error as Anthropic's clients read it.
pub fn error_body(status: u16, message: String) -> ErrorResponse {
    ErrorResponse::new(ErrorResponse::kind_for_status(status), message)
}

/// The block a stream is writing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Text,
    Thinking,
    /// A tool call: chat's index of it.
    Tool(u32),
}

/// Chat chunks → Anthropic's stream events.
#[derive(Default)]
pub struct MessagesSse {
    started: bool,
    /// The block being written and its index.
    open: Option<(Open, u32)>,
    blocks: u32,
    finish: Option<String>,
}

impl MessagesSse {
    fn event(out: &mut Vec<u8>, event: &StreamEvent) {
        out.extend_from_slice(&sse_event(Some(event.name()), event));
    }

    fn start(&mut self, chunk: &ChatCompletionChunk, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = MessagesResponse {
            id: message_id(&chunk.id),
            kind: "message".into(),
            role: ARole::Assistant,
            model: chunk.model.clone(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: AUsage::default(),
            extra: Default::default(),
        };
        Self::event(out, &StreamEvent::MessageStart { message });
    }

    /// Makes `kind` the open block, closing the one before; true if it opened now.
    fn open(&mut self, kind: Open, block: ContentBlock, out: &mut Vec<u8>) -> u32 {
        if let Some((open, index)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some((kind, index));
        Self::event(
            out,
            &StreamEvent::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            Self::event(out, &StreamEvent::ContentBlockStop { index });
        }
    }

    fn delta(out: &mut Vec<u8>, index: u32, delta: BlockDelta) {
        Self::event(out, &StreamEvent::ContentBlockDelta { index, delta });
    }

    fn chunk(&mut self, chunk: ChatCompletionChunk, out: &mut Vec<u8>) {
        self.start(&chunk, out);
        if let Some(finish) = super::feed(chunk, self, out) {
            self.finish = Some(finish);
        }
    }

    fn finished(&mut self, chunk: ChatCompletionChunk, out: &mut Vec<u8>) {
        self.start(&chunk, out);
        self.close(out);
        let usage = chunk.usage.as_ref().map(usage).unwrap_or_default();
        Self::event(
            out,
            &StreamEvent::MessageDelta {
                delta: MessageDeltaBody {
                    stop_reason: Some(stop_reason(self.finish.as_deref()).to_owned()),
                    stop_sequence: None,
                },
                usage: DeltaUsage {
                    output_tokens: usage.output_tokens,
                    input_tokens: Some(usage.input_tokens),
                    cache_creation_input_tokens: usage.cache_creation_input_tokens,
                    cache_read_input_tokens: usage.cache_read_input_tokens,
                    extra: usage.extra,
                },
            },
        );
        Self::event(out, &StreamEvent::MessageStop);
    }
}

impl super::Pieces for MessagesSse {
    fn reasoning(&mut self, text: &str, out: &mut Vec<u8>) {
        let block = ContentBlock::Thinking {
            thinking: String::new(),
            signature: String::new(),
        };
        let index = self.open(Open::Thinking, block, out);
        let thinking = text.to_owned();
        Self::delta(out, index, BlockDelta::ThinkingDelta { thinking });
    }

    fn text(&mut self, text: String, out: &mut Vec<u8>) {
        let index = self.open(Open::Text, ContentBlock::text(""), out);
        Self::delta(out, index, BlockDelta::TextDelta { text });
    }

    fn call(&mut self, call: openai::ToolCallDelta, out: &mut Vec<u8>) {
        let function = call.function.unwrap_or_default();
        let index = match (call.id, self.open) {
            (None, Some((Open::Tool(i), index))) if i == call.index => index,
            (id, _) => {
                let block = ContentBlock::ToolUse {
                    id: id.unwrap_or_else(|| super::new_id("toolu_")),
                    name: function.name.clone().unwrap_or_default(),
                    input: Value::Object(Default::default()),
                    extra: Default::default(),
                };
                self.open(Open::Tool(call.index), block, out)
            }
        };
        if let Some(partial_json) = function.arguments.filter(|a| !a.is_empty()) {
            Self::delta(out, index, BlockDelta::InputJsonDelta { partial_json });
        }
    }
}

impl Encoder for MessagesSse {
    fn encode(&mut self, item: Relayed) -> Bytes {
        let mut out = Vec::with_capacity(256);
        match item {
            Relayed::Chunk(chunk) => self.chunk(chunk, &mut out),
            Relayed::Finished(usage) => self.finished(usage, &mut out),
            Relayed::BrokeOff { usage, error } => {
                self.start(&usage, &mut out);
                let error = ErrorDetail {
                    kind: "api_error".into(),
                    message: format!("The provider's stream broke off: {error}"),
                };
                Self::event(&mut out, &StreamEvent::Error { error });
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: Value) -> ChatRequest {
        to_chat(serde_json::from_value(body).unwrap()).unwrap()
    }

    #[test]
    fn tool_results_come_first_and_cache_marks_are_kept() {
        let out = chat(json!({
            "model": "standard", "max_tokens": 100, "prefer": "cheap",
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}]},
                {"role": "user", "content": [{"type": "text", "text": "and then?"}, {"type": "tool_result", "tool_use_id": "t1", "content": "4", "is_error": true}]}
            ]
        }));
        let out = serde_json::to_value(out).unwrap();
        assert_eq!(out["prefer"], "cheap");
        assert_eq!(
            out["messages"][0]["content"][0]["cache_control"]["type"],
            "ephemeral"
        );
        assert_eq!(out["tools"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(
            out["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(out["messages"][3]["role"], "tool");
        assert_eq!(out["messages"][3]["content"], "Error: 4");
        assert_eq!(out["messages"][4]["role"], "user");
        assert_eq!(out["messages"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn unsupported_blocks_and_fields_are_refused_by_name() {
        let document = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]});
        let error = to_chat(serde_json::from_value(document).unwrap()).unwrap_err();
        assert!(error.to_string().contains("messages.0.content"), "{error}");
        let mcp = json!({"model": "m", "max_tokens": 5, "mcp_servers": [{}], "messages": [{"role": "user", "content": "x"}]});
        let error = to_chat(serde_json::from_value(mcp).unwrap()).unwrap_err();
        assert!(error.to_string().contains("mcp_servers"), "{error}");
    }

    #[test]
    fn usage_splits_cache_reads_and_writes_out_of_input() {
        let usage: Usage = serde_json::from_value(json!({
            "prompt_tokens": 1000, "completion_tokens": 7, "total_tokens": 1007,
            "prompt_tokens_details": {"cached_tokens": 600}, "cache_creation_input_tokens": 300,
            "cost": "0.001"
        }))
        .unwrap();
        let out = super::usage(&usage);
        assert_eq!(
            (
                out.input_tokens,
                out.cache_read_input_tokens,
                out.cache_creation_input_tokens
            ),
            (100, Some(600), Some(300))
        );
        assert_eq!(out.extra["cost"], "0.001");
    }
}
