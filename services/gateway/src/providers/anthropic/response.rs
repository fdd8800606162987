//! Anthropic answers → OpenAI shapes, whole and streamed.
//!
//! | Anthropic `stop_reason`   | OpenAI `finish_reason` |
//! |---------------------------|------------------------|
//! | `end_turn`, `stop_sequence`, `pause_turn` | `stop`  |
//! | `max_tokens`              | `length`               |
//! | `tool_use`                | `tool_calls` (`stop` in JSON mode) |
//! | `refusal`                 | `content_filter`       |
//!
//! Usage: `prompt_tokens` = input + cache reads + cache writes, of which
//! cache reads are `prompt_tokens_details.cached_tokens` (billed at the
//! cached rate); cache writes are also reported as
//! `cache_creation_input_tokens` (billed at the model's cache-write rate). Thinking blocks are left out unless the
//! request asked for thinking, then they come as `reasoning_content`.

use std::collections::HashMap;

use anthropic::{BlockDelta, ContentBlock, MessagesResponse, StreamEvent, Usage as AUsage};
use openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, Delta, Extra, FunctionCall,
    FunctionCallDelta, ToolCall, ToolCallDelta, Usage,
};
use serde_json::Value;

use crate::providers::translate::{self, unix_now, Chunks};
use crate::providers::ProviderError;

/// What the translation needs to know about the request.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// The tool that carries JSON mode, whose input is the answer's content.
    pub json_tool: Option<String>,
    /// Whether thinking was requested, so it is returned as `reasoning_content`.
    pub thinking: bool,
}

fn finish_reason(stop_reason: Option<&str>, json_mode: bool) -> Option<String> {
    let reason = match stop_reason? {
        "max_tokens" => "length",
        "tool_use" if !json_mode => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    };
    Some(reason.to_owned())
}

/// OpenAI usage from Anthropic's counts.
pub fn usage(u: &AUsage) -> Usage {
    translate::usage(
        u.input_tokens,
        u.cache_read_input_tokens.unwrap_or(0),
        u.cache_creation_input_tokens.unwrap_or(0),
        u.output_tokens,
    )
}

/// A whole response.
pub fn completion(response: MessagesResponse, asked: &Asked) -> ChatCompletion {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut tool_calls = Vec::new();
    for block in response.content {
        match block {
            ContentBlock::Text { text: t, .. } => text.push_str(&t),
            ContentBlock::Thinking { thinking: t, .. } => thinking.push_str(&t),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => {
                if asked.json_tool.as_deref() == Some(name.as_str()) {
                    text.push_str(&input.to_string());
                } else {
                    tool_calls.push(ToolCall {
                        id,
                        kind: "function".into(),
                        function: FunctionCall {
                            name,
                            arguments: input.to_string(),
                        },
                    });
                }
            }
            _ => {}
        }
    }
    let mut extra = Extra::new();
    if asked.thinking && !thinking.is_empty() {
        extra.insert("reasoning_content".into(), Value::String(thinking));
    }
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    ChatCompletion {
        id: response.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: response.model,
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                extra,
            },
            finish_reason: finish_reason(
                response.stop_reason.as_deref(),
                asked.json_tool.is_some(),
            ),
            extra: Extra::new(),
        }],
        usage: Some(usage(&response.usage)),
        extra: Extra::new(),
    }
}

/// The status an in-stream `error` event stands for, so retry rules apply.
fn status_of(kind: &str) -> u16 {
    match kind {
        "overloaded_error" => 529,
        "rate_limit_error" => 429,
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        _ => 500,
    }
}

/// Turns Anthropic stream events into OpenAI chunks, one event at a time.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    asked: Asked,
    chunks: Chunks,
    usage: AUsage,
    /// Content block index → OpenAI tool call index, for tool-use blocks.
    tool_calls: HashMap<u32, u32>,
    /// The block carrying JSON mode, whose input streams as content.
    json_block: Option<u32>,
    finished: bool,
}

impl StreamTranslator {
    /// A translator for a request that asked `asked`.
    pub fn new(asked: Asked) -> StreamTranslator {
        StreamTranslator {
            asked,
            chunks: Chunks {
                created: unix_now(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Whether `message_stop` was seen: the stream is complete.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The chunk (if any) one event becomes; an `error` event is an error.
    pub fn on(&mut self, event: StreamEvent) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        let chunk = match event {
            StreamEvent::MessageStart { message } => {
                self.chunks.id = message.id;
                self.chunks.model = message.model;
                self.usage = message.usage;
                Some(self.chunks.role())
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block: ContentBlock::ToolUse { id, name, .. },
            } => {
                if self.asked.json_tool.as_deref() == Some(name.as_str()) {
                    self.json_block = Some(index);
                    return Ok(None);
                }
                let call_index = self.tool_calls.len() as u32;
                self.tool_calls.insert(index, call_index);
                Some(self.chunks.tool(ToolCallDelta {
                    index: call_index,
                    id: Some(id),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: Some(name),
                        arguments: Some(String::new()),
                    }),
                }))
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => Some(self.chunks.text(text)),
                BlockDelta::InputJsonDelta { partial_json } => {
                    if self.json_block == Some(index) {
                        Some(self.chunks.text(partial_json))
                    } else {
                        let call_index = *self.tool_calls.get(&index).ok_or_else(|| {
                            ProviderError::Protocol(format!(
                                "input_json_delta for block {index}, which is not a tool_use block"
                            ))
                        })?;
                        Some(self.chunks.tool(ToolCallDelta {
                            index: call_index,
                            id: None,
                            kind: None,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(partial_json),
                            }),
                        }))
                    }
                }
                BlockDelta::ThinkingDelta { thinking } if self.asked.thinking => {
                    let mut extra = Extra::new();
                    extra.insert("reasoning_content".into(), Value::String(thinking));
                    Some(self.chunks.delta(
                        Delta {
                            extra,
                            ..Default::default()
                        },
                        None,
                    ))
                }
                _ => None,
            },
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.output_tokens = usage.output_tokens;
                if let Some(n) = usage.input_tokens {
                    self.usage.input_tokens = n;
                }
                if let Some(n) = usage.cache_read_input_tokens {
                    self.usage.cache_read_input_tokens = Some(n);
                }
                if let Some(n) = usage.cache_creation_input_tokens {
                    self.usage.cache_creation_input_tokens = Some(n);
                }
                let reason =
                    finish_reason(delta.stop_reason.as_deref(), self.asked.json_tool.is_some());
                Some(self.chunks.delta(Delta::default(), reason))
            }
            StreamEvent::MessageStop => {
                self.finished = true;
                Some(self.chunks.usage(usage(&self.usage)))
            }
            StreamEvent::Error { error } => {
                return Err(ProviderError::Status {
                    status: status_of(&error.kind),
                    message: error.message,
                    retry_after: None,
                })
            }
            StreamEvent::ContentBlockStart { .. }
            | StreamEvent::ContentBlockStop { .. }
            | StreamEvent::Ping => None,
        };
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(content: Value, stop_reason: &str, usage: Value) -> MessagesResponse {
        serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": stop_reason, "stop_sequence": null, "usage": usage
        }))
        .unwrap()
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        let text = json!([{"type": "text", "text": "hi"}]);
        let usage = json!({"input_tokens": 1, "output_tokens": 1});
        for (stop, json_mode, expected) in [
            ("end_turn", false, "stop"),
            ("stop_sequence", false, "stop"),
            ("pause_turn", false, "stop"),
            ("max_tokens", false, "length"),
            ("tool_use", false, "tool_calls"),
            ("tool_use", true, "stop"),
            ("refusal", false, "content_filter"),
        ] {
            let asked = Asked {
                json_tool: json_mode.then(|| "j".to_owned()),
                thinking: false,
            };
            let out = completion(message(text.clone(), stop, usage.clone()), &asked);
            assert_eq!(
                out.choices[0].finish_reason.as_deref(),
                Some(expected),
                "{stop}"
            );
        }
    }

    #[test]
    fn blocks_and_cache_usage_come_back_whole() {
        let content = json!([
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Let me "},
            {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}},
            {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}
        ]);
        let usage = json!({"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3});
        let out = completion(
            message(content.clone(), "tool_use", usage.clone()),
            &Asked::default(),
        );
        let m = &out.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Let me check."));
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.arguments.as_str()),
            ("toolu_1", "{\"x\":1}")
        );
        assert!(
            m.extra.get("reasoning_content").is_none(),
            "thinking only when asked"
        );
        let u = out.usage.unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.cached_tokens(),
                u.completion_tokens,
                u.total_tokens
            ),
            (18, 5, 7, 25)
        );
        assert_eq!(u.extra["cache_creation_input_tokens"], 3);

        let thinking = Asked {
            json_tool: None,
            thinking: true,
        };
        let out = completion(message(content, "tool_use", usage), &thinking);
        assert_eq!(out.choices[0].message.extra["reasoning_content"], "hmm");
    }

    fn events(values: Value) -> Vec<StreamEvent> {
        serde_json::from_value(values).unwrap()
    }

    #[test]
    fn a_stream_becomes_role_text_tool_deltas_finish_and_usage() {
        let mut t = StreamTranslator::new(Asked::default());
        let input = events(json!([
            {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 2}}},
            {"type": "ping"},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\""}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ":1}"}},
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}},
            {"type": "message_stop"}
        ]));
        let chunks: Vec<ChatCompletionChunk> =
            input.into_iter().filter_map(|e| t.on(e).unwrap()).collect();
        assert!(t.finished());
        let deltas: Vec<Value> = chunks
            .iter()
            .map(|c| serde_json::to_value(c.choices.first().map(|c| &c.delta)).unwrap())
            .collect();
        assert_eq!(deltas[0], json!({"role": "assistant", "content": ""}));
        assert_eq!(deltas[1], json!({"content": "Hi"}));
        assert_eq!(
            deltas[2],
            json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}]})
        );
        assert_eq!(
            deltas[3],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\""}}]})
        );
        assert_eq!(
            chunks[5].choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        let usage = chunks[6].usage.as_ref().unwrap();
        assert!(chunks[6].choices.is_empty());
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.cached_tokens(),
                usage.completion_tokens
            ),
            (14, 2, 9)
        );
        assert!(chunks
            .iter()
            .all(|c| c.id == "msg_1" && c.model == "claude-x"));
    }

    #[test]
    fn stream_errors_keep_their_retry_class() {
        let mut t = StreamTranslator::new(Asked::default());
        let overloaded = events(
            json!([{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]),
        );
        let error = t.on(overloaded.into_iter().next().unwrap()).unwrap_err();
        assert_eq!(error.status(), Some(529));
        assert!(error.retryable());
        let stray = events(
            json!([{"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "{"}}]),
        );
        assert!(matches!(
            t.on(stray.into_iter().next().unwrap()),
            Err(ProviderError::Protocol(_))
        ));
    }
}
