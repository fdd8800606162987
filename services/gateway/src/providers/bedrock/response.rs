//! Converse answers → OpenAI shapes, whole and streamed.
//!
//! | Converse `stopReason` | OpenAI `finish_reason` |
//! |-----------------------|------------------------|
//! | `end_turn`, `stop_sequence` | `stop` |
//! | `tool_use` | `tool_calls` |
//! | `max_tokens`, `model_context_window_exceeded` | `length` |
//! | `guardrail_intervened`, `content_filtered` | `content_filter` |
//!
//! Usage: `prompt_tokens` = input + cache reads + cache writes (cache reads
//! as `cached_tokens`, writes also as `cache_creation_input_tokens`),
//! `completion_tokens` = output. Reasoning blocks are
//! not content. A stream ends at its `metadata` event, which carries usage;
//! an exception frame keeps its class (throttling is a 429, unavailability a
//! 503, so retry rules apply).

use std::collections::HashMap;

use bedrock::eventstream::Frame;
use bedrock::{
    BlockDelta, BlockStart, ContentBlock, ContentBlockDeltaEvent, ContentBlockStartEvent,
    ConverseResponse, ErrorBody, MessageStopEvent, MetadataEvent, TokenUsage,
};
use openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, Delta, Extra, FunctionCall,
    FunctionCallDelta, ToolCall, ToolCallDelta, Usage,
};

use crate::providers::translate::{self, unix_now, Chunks};
use crate::providers::ProviderError;

fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
    .to_owned()
}

/// OpenAI usage from Converse's counts.
pub fn usage(u: &TokenUsage) -> Usage {
    translate::usage(
        u.input_tokens,
        u.cache_read_input_tokens.unwrap_or(0),
        u.cache_write_input_tokens.unwrap_or(0),
        u.output_tokens,
    )
}

/// A whole response from `model`, with `id` as its completion id.
pub fn completion(response: ConverseResponse, model: &str, id: String) -> ChatCompletion {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in response.output.message.content {
        match block {
            ContentBlock::Text(t) => text.push_str(&t),
            ContentBlock::ToolUse(tool) => calls.push(ToolCall {
                id: tool.tool_use_id,
                kind: "function".into(),
                function: FunctionCall {
                    name: tool.name,
                    arguments: tool.input.to_string(),
                },
            }),
            _ => {}
        }
    }
    ChatCompletion {
        id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: (!text.is_empty() || calls.is_empty()).then_some(text),
                tool_calls: (!calls.is_empty()).then_some(calls),
                extra: Extra::new(),
            },
            finish_reason: Some(finish_reason(&response.stop_reason)),
            extra: Extra::new(),
        }],
        usage: Some(usage(&response.usage)),
        extra: Extra::new(),
    }
}

/// The status an exception frame stands for.
fn status_of(exception: &str) -> u16 {
    match exception {
        "throttlingException" => 429,
        "serviceUnavailableException" => 503,
        "validationException" => 400,
        "modelTimeoutException" => 408,
        "modelStreamErrorException" => 424,
        _ => 500,
    }
}

/// Turns Converse stream frames into OpenAI chunks, one frame at a time.
#[derive(Debug)]
pub struct StreamTranslator {
    chunks: Chunks,
    /// Content block index → OpenAI tool call index, for tool-use blocks.
    tool_calls: HashMap<u32, u32>,
    finished: bool,
}

fn decode<T: serde::de::DeserializeOwned>(kind: &str, payload: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(payload)
        .map_err(|e| ProviderError::Protocol(format!("bad Bedrock {kind} event: {e}")))
}

impl StreamTranslator {
    /// A translator for answers by `model`, as completion `id`.
    pub fn new(model: &str, id: String) -> StreamTranslator {
        StreamTranslator {
            chunks: Chunks {
                id,
                model: model.to_owned(),
                created: unix_now(),
            },
            tool_calls: HashMap::new(),
            finished: false,
        }
    }

    /// Whether the final `metadata` event was seen.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The chunk (if any) one frame becomes; an exception frame is an error.
    pub fn on(&mut self, frame: Frame) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        let (kind, payload) = match frame {
            Frame::Event { kind, payload } => (kind, payload),
            Frame::Exception { kind, payload } => {
                let message = decode::<ErrorBody>(&kind, &payload)
                    .map(|b| b.message)
                    .unwrap_or_else(|_| kind.clone());
                return Err(ProviderError::Status {
                    status: status_of(&kind),
                    message: format!("{kind}: {message}"),
                    retry_after: None,
                });
            }
        };
        let chunk = match kind.as_str() {
            "messageStart" => Some(self.chunks.role()),
            "contentBlockStart" => {
                let event: ContentBlockStartEvent = decode(&kind, &payload)?;
                let BlockStart::ToolUse(tool) = event.start;
                let call_index = self.tool_calls.len() as u32;
                self.tool_calls
                    .insert(event.content_block_index, call_index);
                Some(self.chunks.tool(ToolCallDelta {
                    index: call_index,
                    id: Some(tool.tool_use_id),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: Some(tool.name),
                        arguments: Some(String::new()),
                    }),
                }))
            }
            "contentBlockDelta" => {
                let event: ContentBlockDeltaEvent = decode(&kind, &payload)?;
                match event.delta {
                    BlockDelta::Text(text) => Some(self.chunks.text(text)),
                    BlockDelta::ToolUse(piece) => {
                        let index = event.content_block_index;
                        let call_index = *self.tool_calls.get(&index).ok_or_else(|| {
                            ProviderError::Protocol(format!(
                                "toolUse delta for block {index}, which started no tool use"
                            ))
                        })?;
                        Some(self.chunks.tool(ToolCallDelta {
                            index: call_index,
                            id: None,
                            kind: None,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(piece.input),
                            }),
                        }))
                    }
                    BlockDelta::ReasoningContent(_) => None,
                }
            }
            "messageStop" => {
                let event: MessageStopEvent = decode(&kind, &payload)?;
                Some(
                    self.chunks
                        .delta(Delta::default(), Some(finish_reason(&event.stop_reason))),
                )
            }
            "metadata" => {
                let event: MetadataEvent = decode(&kind, &payload)?;
                self.finished = true;
                Some(self.chunks.usage(usage(&event.usage)))
            }
            _ => None,
        };
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bedrock::eventstream;
    use serde_json::json;

    fn event(kind: &str, payload: serde_json::Value) -> Frame {
        Frame::Event {
            kind: kind.into(),
            payload: payload.to_string().into(),
        }
    }

    #[test]
    fn stop_reasons_and_cache_usage_map() {
        for (stop, expected) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("tool_use", "tool_calls"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), expected);
        }
        let u = usage(&TokenUsage {
            input_tokens: 10,
            output_tokens: 4,
            total_tokens: 14,
            cache_read_input_tokens: Some(6),
            cache_write_input_tokens: Some(2),
        });
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens(), u.total_tokens),
            (18, 6, 22)
        );
    }

    #[test]
    fn frames_become_chunks_and_exceptions_keep_their_class() {
        let mut t = StreamTranslator::new("m", "id".into());
        let frames = [
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"delta": {"text": "Hi"}, "contentBlockIndex": 0}),
            ),
            event(
                "contentBlockStart",
                json!({"start": {"toolUse": {"toolUseId": "t1", "name": "f"}}, "contentBlockIndex": 1}),
            ),
            event(
                "contentBlockDelta",
                json!({"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 1}),
            ),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event(
                "metadata",
                json!({"usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}, "metrics": {"latencyMs": 1}}),
            ),
        ];
        let chunks: Vec<_> = frames
            .into_iter()
            .filter_map(|f| t.on(f).unwrap())
            .collect();
        assert_eq!(chunks.len(), 6);
        assert_eq!(chunks[1].choices[0].delta.content.as_deref(), Some("Hi"));
        let head = &chunks[2].choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!((head.index, head.id.as_deref()), (0, Some("t1")));
        assert_eq!(
            chunks[4].choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        assert_eq!(chunks[5].usage.as_ref().unwrap().completion_tokens, 5);
        assert!(t.finished());

        let mut decoder = eventstream::Decoder::default();
        decoder.push(&eventstream::exception(
            "throttlingException",
            br#"{"message":"slow down"}"#,
        ));
        let error = t.on(decoder.next_frame().unwrap().unwrap()).unwrap_err();
        assert_eq!(error.status(), Some(429));
        assert!(error.retryable() && error.to_string().contains("slow down"));
    }
}
