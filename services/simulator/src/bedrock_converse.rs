//! `POST /bedrock/model/{modelId}/converse` and `/converse-stream`: Bedrock
//! Runtime's Converse API as the real service plays it. Every request must
//! carry a valid SigV4 signature (service `bedrock`) by the simulator's
//! access key (`AKIASIMULATOR`, secret: the simulator key); a bad one gets
//! the 403 AWS sends. Errors carry `x-amzn-ErrorType` and `{"message"}`;
//! streams are AWS event-stream frames.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bedrock::sigv4::{self, Credentials};
use bedrock::{
    eventstream, BlockDelta, BlockStart, ContentBlock, ContentBlockDeltaEvent,
    ContentBlockStartEvent, ContentBlockStopEvent, ConverseRequest, ConverseResponse, ErrorBody,
    Message, MessageStartEvent, MessageStopEvent, MetadataEvent, Metrics, Output, TokenUsage,
    ToolChoice as BToolChoice, ToolResultContent, ToolUseBlock, ToolUseDelta, ToolUseStart,
};
use catalog::ProviderId;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::generate::{self, Ask, Reply, ToolChoice};
use crate::Simulator;

/// Where the simulator serves Bedrock Runtime (boto3's `endpoint_url`).
pub const PREFIX: &str = ProviderId::Bedrock.spec().simulator_path;

pub(crate) fn error(status: u16, message: impl Into<String>) -> Response {
    error_of(status, bedrock::error_type(status), message)
}

fn error_of(status: u16, kind: &str, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        code,
        Json(ErrorBody {
            message: message.into(),
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        headers.insert("x-amzn-errortype", value);
    }
    headers.insert("x-amzn-requestid", HeaderValue::from_static("sim-request"));
    response
}

/// The handler, for both methods.
pub(crate) async fn handle(
    State(sim): State<Arc<Simulator>>,
    Path((model, method)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = authenticate(&sim, &uri, &headers, &body) {
        return error_of(403, refusal.kind, refusal.message);
    }
    let stream = match method.as_str() {
        "invoke" => return crate::embeddings::titan(&sim, &model, &headers, &body).await,
        "converse" => false,
        "converse-stream" => true,
        _ => return error(404, format!("Unknown operation: {method}")),
    };
    sim.recorder.record(ProviderId::Bedrock, &body);
    let request: ConverseRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                400,
                format!("Malformed input request: {e}, please reformat your input and try again."),
            )
        }
    };
    if let Some(rejection) = validate(&sim, &model, &request) {
        return rejection;
    }
    let fault = match sim.faults.take(&headers, ProviderId::Bedrock, &model) {
        Ok(f) => f.unwrap_or_default(),
        Err(message) => return error(400, message),
    };
    if let Some(ms) = fault.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(response) = fault.error(injected_error) {
        return response;
    }
    let ask = ask_of(&request);
    let reply = generate::reply(&ask, &model, 0);
    let prompt = sim.tokens.count_text(&ask.texts.concat()) + 3 * request.messages.len() as u64;
    let cached = sim
        .prompt_cache
        .converse(&model, &request, |text| sim.tokens.count_text(text));
    let input_tokens = prompt.saturating_sub(cached.written + cached.read);
    let usage = TokenUsage {
        input_tokens,
        output_tokens: reply.completion_tokens,
        total_tokens: prompt + reply.completion_tokens,
        cache_read_input_tokens: Some(cached.read),
        cache_write_input_tokens: Some(cached.written),
    };
    let response = ConverseResponse {
        output: Output {
            message: Message {
                role: "assistant".into(),
                content: blocks(&reply, ask.seed_of(&model, 0)),
            },
        },
        stop_reason: stop_reason(&reply).into(),
        usage,
        metrics: Some(Metrics { latency_ms: 12 }),
        extra: Default::default(),
    };
    if !stream {
        return Json(response).into_response();
    }
    let delay = fault
        .chunk_delay_ms
        .map_or(sim.chunk_delay(), Duration::from_millis);
    let mut frames = frames(response);
    if let Some(frame) = fault.corrupt_frame.and_then(|n| frames.get_mut(n as usize)) {
        let mut bytes = frame.to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        *frame = Bytes::from(bytes);
    }
    event_stream(frames, delay, fault.cut_after_chunks)
}

fn authenticate(
    sim: &Simulator,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), sigv4::Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let url = format!("http://{host}{uri}");
    let pairs: Vec<(String, &str)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_ascii_lowercase(), v.to_str().ok()?)))
        .collect();
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let known = |id: &str| {
        (id == sim.config.aws_access_key_id).then(|| Credentials {
            access_key_id: id.to_owned(),
            secret_access_key: sim.config.api_key.clone(),
            session_token: None,
        })
    };
    sigv4::verify(
        Method::POST.as_str(),
        &url,
        &pairs,
        body,
        known,
        SystemTime::now(),
    )
}

/// What the real API refuses before generating.
fn validate(sim: &Simulator, model: &str, request: &ConverseRequest) -> Option<Response> {
    let Some(entry) = sim.model(ProviderId::Bedrock, model) else {
        return Some(error(400, "The provided model identifier is invalid."));
    };
    if request.messages.is_empty() {
        return Some(error(400, "A conversation must start with a user message. Try again with a conversation that starts with a user message."));
    }
    if request.messages.first().is_some_and(|m| m.role != "user") {
        return Some(error(400, "A conversation must start with a user message. Try again with a conversation that starts with a user message."));
    }
    if request.messages.windows(2).any(|w| w[0].role == w[1].role) {
        return Some(error(400, "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."));
    }
    let config = request.inference_config.clone().unwrap_or_default();
    if config
        .max_tokens
        .is_some_and(|m| m == 0 || m > entry.max_output_tokens)
    {
        return Some(error(400, format!("The maximum tokens you requested exceeds the model limit of {}. Try again with a maximum tokens value that is lower than {}.", entry.max_output_tokens, entry.max_output_tokens)));
    }
    if config
        .temperature
        .is_some_and(|t| !(0.0..=1.0).contains(&t))
    {
        return Some(error(400, "1 validation error detected: Value at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"));
    }
    let rates = entry.pricing.base;
    if has_cache_point(request) && rates.cached_input.is_none() && rates.cache_write.is_none() {
        return Some(error(
            400,
            "You invoked an unsupported model or your request did not allow prompt caching. See the documentation for more information.",
        ));
    }
    None
}

/// Whether the request places a prompt-cache checkpoint anywhere.
fn has_cache_point(request: &ConverseRequest) -> bool {
    let tools = request.tool_config.iter().flat_map(|c| &c.tools);
    tools
        .into_iter()
        .any(|t| matches!(t, bedrock::Tool::CachePoint(_)))
        || request
            .system
            .iter()
            .flatten()
            .any(|b| matches!(b, bedrock::SystemBlock::CachePoint(_)))
        || request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|b| matches!(b, ContentBlock::CachePoint(_)))
}

pub(crate) fn injected_error(status: u16) -> Response {
    let message = match status {
        429 => "Too many requests, please wait before trying again.",
        503 => "Bedrock is unable to process your request.",
        400 => "The request was rejected by the simulated provider.",
        403 => "You don't have access to the model with the specified model ID.",
        _ => "The server encountered an internal error while processing the request.",
    };
    error(status, message)
}

/// The texts of a turn: text blocks and textual tool results.
fn texts_of(m: &Message) -> Vec<&str> {
    m.content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.as_str()),
            ContentBlock::ToolResult(r) => r.content.iter().find_map(|c| match c {
                ToolResultContent::Text(t) => Some(t.as_str()),
                ToolResultContent::Json(_) => None,
            }),
            _ => None,
        })
        .collect()
}

/// What a Converse request asks of the reply generator.
fn ask_of(request: &ConverseRequest) -> Ask<'_> {
    let mut texts: Vec<&str> = request
        .system
        .iter()
        .flatten()
        .filter_map(|s| match s {
            bedrock::SystemBlock::Text(text) => Some(text.as_str()),
            bedrock::SystemBlock::CachePoint(_) => None,
        })
        .collect();
    texts.extend(request.messages.iter().flat_map(texts_of));
    let tool_config = request.tool_config.as_ref();
    let tools = tool_config
        .map(|c| {
            c.tools
                .iter()
                .filter_map(|tool| match tool {
                    bedrock::Tool::ToolSpec(spec) => {
                        Some((spec.name.as_str(), &spec.input_schema.json))
                    }
                    bedrock::Tool::CachePoint(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let tool_choice = match tool_config.and_then(|c| c.tool_choice.as_ref()) {
        Some(BToolChoice::Tool(named)) => ToolChoice::Named(&named.name),
        _ => ToolChoice::Auto,
    };
    let config = request.inference_config.as_ref();
    Ask {
        texts,
        last_user: request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(texts_of)
            .unwrap_or_default(),
        tools,
        tool_choice,
        after_tool_result: request.messages.last().is_some_and(|m| {
            m.content
                .iter()
                .any(|b| matches!(b, ContentBlock::ToolResult(_)))
        }),
        json_schema: None,
        stop: config
            .and_then(|c| c.stop_sequences.as_ref())
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default(),
        max_tokens: config.and_then(|c| c.max_tokens),
        seed: 0,
    }
}

fn stop_reason(reply: &Reply) -> &'static str {
    match reply.finish_reason {
        "tool_calls" => "tool_use",
        "length" => "max_tokens",
        _ if reply.stop_sequence.is_some() => "stop_sequence",
        _ => "end_turn",
    }
}

fn blocks(reply: &Reply, seed: u64) -> Vec<ContentBlock> {
    let mut blocks: Vec<ContentBlock> = reply
        .content
        .iter()
        .cloned()
        .map(ContentBlock::Text)
        .collect();
    for (i, call) in reply.tool_calls.iter().flatten().enumerate() {
        blocks.push(ContentBlock::ToolUse(ToolUseBlock {
            tool_use_id: format!("tooluse_{seed:016x}{i}"),
            name: call.function.name.clone(),
            input: serde_json::from_str(&call.function.arguments).unwrap_or(Value::Null),
        }));
    }
    blocks
}

/// The frames of a streamed `response`, in the API's order.
fn frames(response: ConverseResponse) -> Vec<Bytes> {
    let json = |v: &dyn erased::Json| v.to_vec();
    let mut out = vec![eventstream::event(
        "messageStart",
        &json(&MessageStartEvent {
            role: "assistant".into(),
        }),
    )];
    for (i, block) in response.output.message.content.iter().enumerate() {
        let index = i as u32;
        let deltas: Vec<BlockDelta> = match block {
            ContentBlock::Text(text) => text
                .split_inclusive(' ')
                .map(|piece| BlockDelta::Text(piece.into()))
                .collect(),
            ContentBlock::ToolUse(tool) => {
                out.push(eventstream::event(
                    "contentBlockStart",
                    &json(&ContentBlockStartEvent {
                        start: BlockStart::ToolUse(ToolUseStart {
                            tool_use_id: tool.tool_use_id.clone(),
                            name: tool.name.clone(),
                        }),
                        content_block_index: index,
                    }),
                ));
                let input: Vec<char> = tool.input.to_string().chars().collect();
                input
                    .chunks(8)
                    .map(|part| {
                        BlockDelta::ToolUse(ToolUseDelta {
                            input: part.iter().collect(),
                        })
                    })
                    .collect()
            }
            _ => continue,
        };
        for delta in deltas {
            out.push(eventstream::event(
                "contentBlockDelta",
                &json(&ContentBlockDeltaEvent {
                    delta,
                    content_block_index: index,
                }),
            ));
        }
        out.push(eventstream::event(
            "contentBlockStop",
            &json(&ContentBlockStopEvent {
                content_block_index: index,
            }),
        ));
    }
    out.push(eventstream::event(
        "messageStop",
        &json(&MessageStopEvent {
            stop_reason: response.stop_reason,
        }),
    ));
    out.push(eventstream::event(
        "metadata",
        &json(&MetadataEvent {
            usage: response.usage,
            metrics: response.metrics.unwrap_or_default(),
        }),
    ));
    out
}

/// Serializing any of the event payloads.
mod erased {
    /// A payload that serializes to JSON.
    pub trait Json {
        fn to_vec(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_vec(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

/// Sends `frames` `delay` apart as `application/vnd.amazon.eventstream`;
/// with `cut_after`, drops the connection after that many.
fn event_stream(frames: Vec<Bytes>, delay: Duration, cut_after: Option<u32>) -> Response {
    let body = stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
        if cut_after.is_some_and(|n| i >= n as usize) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(std::io::Error::other("simulated stream cut"));
        }
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(frame)
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    headers.insert("x-amzn-requestid", HeaderValue::from_static("sim-request"));
    response
}
