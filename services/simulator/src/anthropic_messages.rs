//! `POST /anthropic/v1/messages`: the Anthropic Messages API as the real
//! service plays it: the key (`x-api-key` or `Authorization: Bearer`) and
//! `anthropic-version` checked, the
//! request validated (model, `max_tokens` within the model's limit,
//! temperature 0–1, every `tool_result` answering a `tool_use` of the turn
//! before and every `tool_use` answered in the turn after), replies as
//! content blocks, and streams as named SSE events.

use std::sync::Arc;
use std::time::Duration;

use anthropic::{
    BlockDelta, Content, ContentBlock, DeltaUsage, ErrorResponse, MessageDeltaBody,
    MessagesRequest, MessagesResponse, Role, StreamEvent, Usage,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use catalog::ProviderId;
use serde_json::Value;

use crate::generate::{self, Ask, Reply, ToolChoice};
use crate::Simulator;

/// Where the simulator serves Anthropic (the SDK's `base_url`).
pub const PREFIX: &str = ProviderId::Anthropic.spec().simulator_path;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = ErrorResponse::kind_for_status(status.as_u16());
    let mut response = (status, Json(ErrorResponse::new(kind, message))).into_response();
    response
        .headers_mut()
        .insert("request-id", HeaderValue::from_static("req_sim"));
    response
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// The handler.
pub(crate) async fn handle(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The API takes the key as `x-api-key` or, as current SDKs send it, as a bearer token.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match headers
        .get("x-api-key")
        .map(HeaderValue::as_bytes)
        .or(bearer)
    {
        None => return error(StatusCode::UNAUTHORIZED, "x-api-key header is required"),
        Some(key) if key != sim.config.api_key.as_bytes() => {
            return error(StatusCode::UNAUTHORIZED, "invalid x-api-key")
        }
        Some(_) => {}
    }
    if !headers.contains_key("anthropic-version") {
        return invalid("anthropic-version: header is required");
    }
    sim.recorder.record(ProviderId::Anthropic, &body);
    let request: MessagesRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(format!("Invalid request body: {e}")),
    };
    if let Some(rejection) = validate(&sim, &request) {
        return rejection;
    }
    let fault = match sim
        .faults
        .take(&headers, ProviderId::Anthropic, &request.model)
    {
        Ok(f) => f.unwrap_or_default(),
        Err(message) => return invalid(message),
    };
    if let Some(ms) = fault.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(response) = fault.error(injected_error) {
        return response;
    }
    let ask = ask_of(&request);
    let reply = generate::reply(&ask, &request.model, 0);
    let id = format!("msg_{:024x}", ask.seed_of(&request.model, u32::MAX));
    let thinking = request
        .thinking
        .as_ref()
        .is_some_and(|t| t.get("type").and_then(Value::as_str) == Some("enabled"));
    let blocks = content_blocks(&reply, &ask, thinking);
    let cached = sim
        .prompt_cache
        .messages(&request, |text| sim.tokens.count_text(text));
    let usage = Usage {
        input_tokens: input_tokens(&sim, &request).saturating_sub(cached.written + cached.read),
        output_tokens: reply.completion_tokens,
        cache_creation_input_tokens: Some(cached.written),
        cache_read_input_tokens: Some(cached.read),
        extra: Default::default(),
    };
    let message = MessagesResponse {
        id,
        kind: "message".into(),
        role: Role::Assistant,
        model: request.model.clone(),
        content: blocks,
        stop_reason: Some(stop_reason(&reply).into()),
        stop_sequence: reply.stop_sequence.clone(),
        usage,
        extra: Default::default(),
    };
    if request.stream == Some(true) {
        let delay = fault
            .chunk_delay_ms
            .map_or(sim.chunk_delay(), Duration::from_millis);
        return sse(events(message), delay, fault.cut_after_chunks);
    }
    let mut response = Json(message).into_response();
    response
        .headers_mut()
        .insert("request-id", HeaderValue::from_static("req_sim"));
    response
}

/// What the real API refuses before generating.
fn validate(sim: &Simulator, request: &MessagesRequest) -> Option<Response> {
    let Some(model) = sim.model(ProviderId::Anthropic, &request.model) else {
        return Some(error(
            StatusCode::NOT_FOUND,
            format!("model: {}", request.model),
        ));
    };
    if request.max_tokens == 0 || request.max_tokens > model.max_output_tokens {
        return Some(invalid(format!(
            "max_tokens: {} > {}, which is the maximum allowed number of output tokens for {}",
            request.max_tokens, model.max_output_tokens, request.model
        )));
    }
    if request.messages.is_empty() {
        return Some(invalid("messages: at least one message is required"));
    }
    if request
        .temperature
        .is_some_and(|t| !(0.0..=1.0).contains(&t))
    {
        return Some(invalid("temperature: range: 0..1"));
    }
    tool_pairing(request).map(invalid)
}

/// Every `tool_result` must answer a `tool_use` of the turn before, and every
/// `tool_use` (but in the last turn) must be answered in the turn after.
fn tool_pairing(request: &MessagesRequest) -> Option<String> {
    let ids = |content: &Content, results: bool| -> Vec<String> {
        match content {
            Content::Text(_) => Vec::new(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, .. } if !results => Some(id.clone()),
                    ContentBlock::ToolResult { tool_use_id, .. } if results => {
                        Some(tool_use_id.clone())
                    }
                    _ => None,
                })
                .collect(),
        }
    };
    let mut asked: Vec<String> = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        let answered = ids(&message.content, true);
        if let Some(stray) = answered.iter().find(|id| !asked.contains(id)) {
            return Some(format!(
                "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {stray}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            ));
        }
        if let Some(missing) = asked.iter().find(|id| !answered.contains(id)) {
            return Some(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
            ));
        }
        asked = if message.role == Role::Assistant {
            ids(&message.content, false)
        } else {
            Vec::new()
        };
    }
    None
}

fn injected_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match status.as_u16() {
        429 => "Number of request tokens has exceeded your per-minute rate limit",
        529 => "Overloaded",
        401 => "invalid x-api-key",
        400 => "The request was rejected by the simulated provider.",
        _ => "Internal server error",
    };
    error(status, message)
}

/// The texts of a turn: text blocks and textual tool results.
fn texts_of(content: &Content) -> Vec<&str> {
    match content {
        Content::Text(text) => vec![text.as_str()],
        Content::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text, .. } => Some(text.as_str()),
                ContentBlock::ToolResult {
                    content: Some(Content::Text(text)),
                    ..
                } => Some(text.as_str()),
                _ => None,
            })
            .collect(),
    }
}

/// What an Anthropic request asks of the reply generator.
fn ask_of(request: &MessagesRequest) -> Ask<'_> {
    let last = request.messages.last();
    let after_tool_result = last.is_some_and(|m| match &m.content {
        Content::Blocks(blocks) => blocks
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { .. })),
        Content::Text(_) => false,
    });
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| texts_of(&m.content))
        .unwrap_or_default();
    let tool_choice = match &request.tool_choice {
        Some(anthropic::ToolChoice::None) => ToolChoice::None,
        Some(anthropic::ToolChoice::Tool { name, .. }) => ToolChoice::Named(name),
        _ => ToolChoice::Auto,
    };
    let mut texts: Vec<&str> = match &request.system {
        Some(anthropic::System::Text(text)) => vec![text.as_str()],
        Some(anthropic::System::Blocks(blocks)) => {
            blocks.iter().filter_map(ContentBlock::as_text).collect()
        }
        None => Vec::new(),
    };
    texts.extend(request.messages.iter().flat_map(|m| texts_of(&m.content)));
    Ask {
        texts,
        last_user,
        tools: request
            .tools
            .iter()
            .flatten()
            .map(|t| (t.name.as_str(), &t.input_schema))
            .collect(),
        tool_choice,
        after_tool_result,
        json_schema: None,
        stop: request
            .stop_sequences
            .iter()
            .flatten()
            .map(String::as_str)
            .collect(),
        max_tokens: Some(request.max_tokens),
        seed: 0,
    }
}

/// Input tokens: the o200k count of every text, plus 3 per turn.
fn input_tokens(sim: &Simulator, request: &MessagesRequest) -> u64 {
    let ask = ask_of(request);
    let text: String = ask.texts.concat();
    sim.tokens.count_text(&text) + 3 * request.messages.len() as u64
}

fn stop_reason(reply: &Reply) -> &'static str {
    match reply.finish_reason {
        "tool_calls" => "tool_use",
        "length" => "max_tokens",
        _ if reply.stop_sequence.is_some() => "stop_sequence",
        _ => "end_turn",
    }
}

fn content_blocks(reply: &Reply, ask: &Ask<'_>, thinking: bool) -> Vec<ContentBlock> {
    let mut blocks = Vec::new();
    if thinking {
        blocks.push(ContentBlock::Thinking {
            thinking: format!(
                "The user asks about: {}.",
                ask.last_user.join(" ").chars().take(60).collect::<String>()
            ),
            signature: "sim-signature".into(),
        });
    }
    if let Some(text) = &reply.content {
        blocks.push(ContentBlock::text(text));
    }
    for call in reply.tool_calls.iter().flatten() {
        blocks.push(ContentBlock::ToolUse {
            id: call.id.replacen("call_", "toolu_", 1),
            name: call.function.name.clone(),
            input: serde_json::from_str(&call.function.arguments).unwrap_or_default(),
            extra: Default::default(),
        });
    }
    blocks
}

/// The event sequence of `message`, as the API streams it.
fn events(message: MessagesResponse) -> Vec<StreamEvent> {
    let mut start = message.clone();
    start.content = Vec::new();
    start.stop_reason = None;
    start.stop_sequence = None;
    start.usage.output_tokens = 1;
    let mut out = vec![
        StreamEvent::MessageStart { message: start },
        StreamEvent::Ping,
    ];
    for (i, block) in message.content.iter().enumerate() {
        let index = i as u32;
        let (empty, deltas) = match block {
            ContentBlock::Text { text, .. } => (
                ContentBlock::text(""),
                text.split_inclusive(' ')
                    .map(|piece| BlockDelta::TextDelta { text: piece.into() })
                    .collect(),
            ),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => {
                let json: Vec<char> = input.to_string().chars().collect();
                (
                    ContentBlock::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: Value::Object(Default::default()),
                        extra: Default::default(),
                    },
                    json.chunks(8)
                        .map(|part| BlockDelta::InputJsonDelta {
                            partial_json: part.iter().collect(),
                        })
                        .collect(),
                )
            }
            ContentBlock::Thinking {
                thinking,
                signature,
            } => (
                ContentBlock::Thinking {
                    thinking: String::new(),
                    signature: String::new(),
                },
                vec![
                    BlockDelta::ThinkingDelta {
                        thinking: thinking.clone(),
                    },
                    BlockDelta::SignatureDelta {
                        signature: signature.clone(),
                    },
                ],
            ),
            _ => continue,
        };
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block: empty,
        });
        out.extend(
            deltas
                .into_iter()
                .map(|delta| StreamEvent::ContentBlockDelta { index, delta }),
        );
        out.push(StreamEvent::ContentBlockStop { index });
    }
    out.push(StreamEvent::MessageDelta {
        delta: MessageDeltaBody {
            stop_reason: message.stop_reason,
            stop_sequence: message.stop_sequence,
        },
        usage: DeltaUsage {
            output_tokens: message.usage.output_tokens,
            ..Default::default()
        },
    });
    out.push(StreamEvent::MessageStop);
    out
}

/// `events` as named SSE frames.
fn sse(events: Vec<StreamEvent>, delay: Duration, cut_after: Option<u32>) -> Response {
    let frames = events
        .into_iter()
        .map(|event| {
            let data = serde_json::to_string(&event).unwrap_or_default();
            format!("event: {}\ndata: {data}\n\n", event.name())
        })
        .collect();
    let mut response = crate::sse::respond(frames, delay, cut_after);
    response
        .headers_mut()
        .insert("request-id", HeaderValue::from_static("req_sim"));
    response
}
