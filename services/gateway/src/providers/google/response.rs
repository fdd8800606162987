//! Gemini answers → OpenAI shapes, whole and streamed.
//!
//! | Gemini `finishReason` | OpenAI `finish_reason` |
//! |-----------------------|------------------------|
//! | `STOP` | `stop`, or `tool_calls` when the answer calls functions |
//! | `MAX_TOKENS` | `length` |
//! | `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `IMAGE_SAFETY` | `content_filter` |
//! | anything else | `stop` |
//!
//! Usage: `prompt_tokens` = `promptTokenCount` (of which
//! `cachedContentTokenCount` are cached), `completion_tokens` =
//! `candidatesTokenCount` + `thoughtsTokenCount` (thinking is billed as
//! output). Thought parts are not content. Function calls get ids
//! `call_<response>_<n>`, as Gemini names none.

use gemini::{Candidate, GenerateContentResponse, UsageMetadata};
use openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Delta, Extra,
    FunctionCall, FunctionCallDelta, PromptTokensDetails, ToolCall, ToolCallDelta, Usage,
};

use crate::providers::translate::unix_now;

fn finish_reason(reason: &str, calls_functions: bool) -> String {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if calls_functions => "tool_calls",
        _ => "stop",
    }
    .to_owned()
}

/// OpenAI usage from Gemini's counts.
pub fn usage(u: &UsageMetadata) -> Usage {
    let completion = u.candidates_token_count + u.thoughts_token_count.unwrap_or(0);
    Usage {
        prompt_tokens: u.prompt_token_count,
        completion_tokens: completion,
        total_tokens: u.prompt_token_count + completion,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: u.cached_content_token_count.unwrap_or(0),
            extra: Extra::new(),
        }),
        completion_tokens_details: u
            .thoughts_token_count
            .map(|n| serde_json::json!({"reasoning_tokens": n})),
        extra: Extra::new(),
    }
}

/// A candidate's text (thoughts excluded) and function calls.
fn split(candidate: &Candidate, id: &str, first_call: usize) -> (String, Vec<ToolCall>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in &candidate.content.parts {
        if part.thought == Some(true) {
            continue;
        }
        if let Some(t) = &part.text {
            text.push_str(t);
        }
        if let Some(call) = &part.function_call {
            calls.push(ToolCall {
                id: format!("call_{id}_{}", first_call + calls.len()),
                kind: "function".into(),
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: call.args.to_string(),
                },
            });
        }
    }
    (text, calls)
}

fn response_id(response: &GenerateContentResponse) -> String {
    response
        .response_id
        .clone()
        .unwrap_or_else(|| "gemini".into())
}

/// A whole response.
pub fn completion(response: GenerateContentResponse, model: &str) -> ChatCompletion {
    let id = response_id(&response);
    let choices = response
        .candidates
        .iter()
        .map(|candidate| {
            let (text, calls) = split(candidate, &id, 0);
            Choice {
                index: candidate.index,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: (!text.is_empty() || calls.is_empty()).then_some(text),
                    tool_calls: (!calls.is_empty()).then_some(calls.clone()),
                    extra: Extra::new(),
                },
                finish_reason: Some(finish_reason(
                    candidate.finish_reason.as_deref().unwrap_or("STOP"),
                    !calls.is_empty(),
                )),
                extra: Extra::new(),
            }
        })
        .collect();
    ChatCompletion {
        id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: response.model_version.unwrap_or_else(|| model.to_owned()),
        choices,
        usage: Some(usage(&response.usage_metadata.unwrap_or_default())),
        extra: Extra::new(),
    }
}

/// Turns streamed `GenerateContentResponse`s into OpenAI chunks. Gemini marks
/// no last event: the stream is complete when a candidate has finished and
/// the body ends; then [`StreamTranslator::usage_chunk`] closes it.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    model: String,
    id: Option<String>,
    created: i64,
    usage: UsageMetadata,
    /// Function calls sent so far, per candidate index.
    calls: Vec<usize>,
    started: bool,
    finished: bool,
}

impl StreamTranslator {
    /// A translator for answers by `model`.
    pub fn new(model: &str) -> StreamTranslator {
        StreamTranslator {
            model: model.to_owned(),
            created: unix_now(),
            ..Default::default()
        }
    }

    /// Whether a candidate has finished.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The chunk one streamed response becomes (text and calls of every
    /// candidate in it, with finish reasons), if it carries any.
    pub fn on(&mut self, response: GenerateContentResponse) -> Option<ChatCompletionChunk> {
        let id = self
            .id
            .get_or_insert_with(|| response_id(&response))
            .clone();
        if let Some(usage) = response.usage_metadata {
            self.usage = usage;
        }
        let mut choices = Vec::new();
        for candidate in &response.candidates {
            let index = candidate.index as usize;
            if self.calls.len() <= index {
                self.calls.resize(index + 1, 0);
            }
            let (text, calls) = split(candidate, &id, self.calls[index]);
            let deltas: Vec<ToolCallDelta> = calls
                .into_iter()
                .enumerate()
                .map(|(k, call)| ToolCallDelta {
                    index: (self.calls[index] + k) as u32,
                    id: Some(call.id),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: Some(call.function.name),
                        arguments: Some(call.function.arguments),
                    }),
                })
                .collect();
            self.calls[index] += deltas.len();
            let finish = candidate
                .finish_reason
                .as_deref()
                .map(|r| finish_reason(r, self.calls[index] > 0));
            self.finished |= finish.is_some();
            if text.is_empty() && deltas.is_empty() && finish.is_none() && self.started {
                continue;
            }
            choices.push(ChunkChoice {
                index: candidate.index,
                delta: Delta {
                    role: (!self.started).then(|| "assistant".to_owned()),
                    content: (!text.is_empty() || !self.started).then_some(text),
                    tool_calls: (!deltas.is_empty()).then_some(deltas),
                    extra: Extra::new(),
                },
                finish_reason: finish,
                extra: Extra::new(),
            });
        }
        if choices.is_empty() {
            return None;
        }
        self.started = true;
        Some(ChatCompletionChunk {
            id,
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: None,
            extra: Extra::new(),
        })
    }

    /// The closing chunk: no choices, the final usage.
    pub fn usage_chunk(&self) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone().unwrap_or_default(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(usage(&self.usage)),
            extra: Extra::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(value: serde_json::Value) -> GenerateContentResponse {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn finish_reasons_map() {
        for (reason, calls, expected) in [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", false, "length"),
            ("SAFETY", false, "content_filter"),
            ("RECITATION", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("MALFORMED_FUNCTION_CALL", false, "stop"),
        ] {
            assert_eq!(finish_reason(reason, calls), expected, "{reason}");
        }
    }

    #[test]
    fn thoughts_stay_out_and_count_as_output() {
        let whole = completion(
            answer(
                json!({"responseId": "r1", "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true}, {"text": "Answer."},
                {"functionCall": {"name": "f", "args": {"a": 1}}}
            ]}}], "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6, "cachedContentTokenCount": 2, "totalTokenCount": 20}}),
            ),
            "gemini-x",
        );
        let m = &whole.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Answer."));
        let call = &m.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (call.id.as_str(), call.function.arguments.as_str()),
            ("call_r1_0", "{\"a\":1}")
        );
        assert_eq!(
            whole.choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        let u = whole.usage.unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.cached_tokens(),
                u.completion_tokens,
                u.total_tokens
            ),
            (10, 2, 10, 20)
        );
        assert_eq!(whole.model, "gemini-x");
    }

    #[test]
    fn a_stream_numbers_calls_across_chunks_and_ends_with_usage() {
        let mut t = StreamTranslator::new("gemini-x");
        let first = t
            .on(answer(json!({"responseId": "r", "candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Hi "}]}}]})))
            .unwrap();
        assert_eq!(
            serde_json::to_value(&first.choices[0].delta).unwrap(),
            json!({"role": "assistant", "content": "Hi "})
        );
        let second = t
            .on(answer(json!({"candidates": [{"index": 0, "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}}]})))
            .unwrap();
        let third = t
            .on(answer(json!({"candidates": [{"index": 0, "finishReason": "STOP", "content": {"parts": [{"functionCall": {"name": "g", "args": {}}}]}}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8}})))
            .unwrap();
        let index =
            |c: &ChatCompletionChunk| c.choices[0].delta.tool_calls.as_ref().unwrap()[0].index;
        assert_eq!((index(&second), index(&third)), (0, 1));
        assert_eq!(
            third.choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        assert!(t.finished());
        let usage = t.usage_chunk().usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 5));
        assert!(t
            .on(answer(
                json!({"candidates": [{"index": 0, "content": {"parts": []}}]})
            ))
            .is_none());
    }
}
