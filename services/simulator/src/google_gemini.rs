//! `POST /google/{v1,v1beta}/models/{model}:generateContent` and
//! `:streamGenerateContent` (`?alt=sse` for SSE, else a JSON array): the
//! Gemini API as the real service plays it. The key comes in
//! `x-goog-api-key` (or `?key=`); a wrong key is a 400 and a missing one a
//! 403, as Google answers; errors use Google's `{"error": {code, message,
//! status}}` envelope.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use catalog::ProviderId;
use gemini::{
    Candidate, Content, ErrorResponse, FunctionCall, GenerateContentRequest,
    GenerateContentResponse, Part, UsageMetadata,
};
use serde_json::Value;

use crate::generate::{self, Ask, Reply, ToolChoice};
use crate::Simulator;

/// Where the simulator serves Gemini (the SDK's `base_url`).
pub const PREFIX: &str = ProviderId::Google.spec().simulator_path;

pub(crate) fn error(status: u16, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(ErrorResponse::new(status, message))).into_response()
}

/// The handler, for both methods.
pub(crate) async fn handle(
    State(sim): State<Arc<Simulator>>,
    Path((version, target)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or(query.get("key").map(String::as_str));
    match key {
        None => return error(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."),
        Some(key) if key != sim.config.api_key => {
            return error(400, "API key not valid. Please pass a valid API key.")
        }
        Some(_) => {}
    }
    let Some((model, method)) = target.split_once(':') else {
        return error(404, format!("Method not found: {target}"));
    };
    let stream = match method {
        "embedContent" | "batchEmbedContents" => {
            let batch = method == "batchEmbedContents";
            return crate::embeddings::gemini(&sim, model, batch, &headers, &body).await;
        }
        "generateContent" => false,
        "streamGenerateContent" => true,
        other => return error(404, format!("Method not found: {other}")),
    };
    sim.recorder.record(ProviderId::Google, &body);
    let request: GenerateContentRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(400, format!("Invalid JSON payload received. {e}")),
    };
    if let Some(rejection) = validate(&sim, &version, model, &request) {
        return rejection;
    }
    let fault = match sim.faults.take(&headers, ProviderId::Google, model) {
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
    let config = request.generation_config.clone().unwrap_or_default();
    let replies: Vec<Reply> = (0..config.candidate_count.unwrap_or(1))
        .map(|i| generate::reply(&ask, model, i))
        .collect();
    let usage = UsageMetadata {
        prompt_token_count: prompt_tokens(&sim, &ask, &request),
        candidates_token_count: replies.iter().map(|r| r.completion_tokens).sum(),
        ..Default::default()
    };
    let id = format!("{:022x}", ask.seed_of(model, u32::MAX));
    if !stream {
        return Json(whole(&replies, usage, model, &id)).into_response();
    }
    let pieces = streamed(&replies, usage, model, &id);
    if query.get("alt").map(String::as_str) != Some("sse") {
        return Json(pieces).into_response();
    }
    let delay = fault
        .chunk_delay_ms
        .map_or(sim.chunk_delay(), Duration::from_millis);
    let frames = pieces
        .iter()
        .map(|p| {
            format!(
                "data: {}\r\n\r\n",
                serde_json::to_string(p).unwrap_or_default()
            )
        })
        .collect();
    crate::sse::respond(frames, delay, fault.cut_after_chunks)
}

/// What the real API refuses before generating.
fn validate(
    sim: &Simulator,
    version: &str,
    model: &str,
    request: &GenerateContentRequest,
) -> Option<Response> {
    if !matches!(version, "v1" | "v1beta") {
        return Some(error(
            404,
            format!("API version {version} is not supported."),
        ));
    }
    let Some(entry) = sim.model(ProviderId::Google, model) else {
        return Some(error(404, format!("models/{model} is not found for API version {version}, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.")));
    };
    if request.contents.is_empty() {
        return Some(error(
            400,
            "* GenerateContentRequest.contents: contents is not specified",
        ));
    }
    if request
        .contents
        .iter()
        .any(|c| !matches!(c.role.as_deref(), None | Some("user" | "model")))
    {
        return Some(error(400, "Please use a valid role: user, model."));
    }
    let config = request.generation_config.clone().unwrap_or_default();
    if config
        .temperature
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return Some(error(400, "* GenerateContentRequest.generation_config.temperature: must be in the range [0.0, 2.0]"));
    }
    if config
        .max_output_tokens
        .is_some_and(|m| m == 0 || m > entry.max_output_tokens)
    {
        return Some(error(400, format!("* GenerateContentRequest.generation_config.max_output_tokens: The maximum number of tokens allowed is {}", entry.max_output_tokens)));
    }
    if config
        .candidate_count
        .is_some_and(|n| !(1..=8).contains(&n))
    {
        return Some(error(
            400,
            "* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8",
        ));
    }
    None
}

pub(crate) fn injected_error(status: u16) -> Response {
    let message = match status {
        429 => "Resource has been exhausted (e.g. check quota).",
        503 => "The model is overloaded. Please try again later.",
        400 => "The request was rejected by the simulated provider.",
        _ => "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    };
    error(status, message)
}

fn texts(content: &Content) -> impl Iterator<Item = &str> {
    content.parts.iter().filter_map(|p| p.text.as_deref())
}

/// What a Gemini request asks of the reply generator.
fn ask_of(request: &GenerateContentRequest) -> Ask<'_> {
    let config = request.generation_config.as_ref();
    let mut all: Vec<&str> = request.system_instruction.iter().flat_map(texts).collect();
    all.extend(request.contents.iter().flat_map(texts));
    let last_user = request
        .contents
        .iter()
        .rev()
        .find(|c| c.role.as_deref() != Some("model"))
        .map(|c| texts(c).collect())
        .unwrap_or_default();
    let tools: Vec<(&str, &Value)> = request
        .tools
        .iter()
        .flatten()
        .flat_map(|t| &t.function_declarations)
        .map(|f| {
            (
                f.name.as_str(),
                f.parameters.as_ref().unwrap_or(&Value::Null),
            )
        })
        .collect();
    let calling = request
        .tool_config
        .as_ref()
        .map(|c| &c.function_calling_config);
    let tool_choice = match calling {
        Some(c) if c.mode == "NONE" => ToolChoice::None,
        Some(c) => match c.allowed_function_names.as_deref() {
            Some([only]) => ToolChoice::Named(only),
            _ => ToolChoice::Auto,
        },
        None => ToolChoice::Auto,
    };
    let json = config.filter(|c| c.response_mime_type.as_deref() == Some("application/json"));
    Ask {
        texts: all,
        last_user,
        tools,
        tool_choice,
        after_tool_result: request
            .contents
            .last()
            .is_some_and(|c| c.parts.iter().any(|p| p.function_response.is_some())),
        json_schema: json.map(|c| {
            c.response_json_schema
                .clone()
                .or_else(|| c.response_schema.clone())
                .unwrap_or_else(generate::any_json_object)
        }),
        stop: config
            .and_then(|c| c.stop_sequences.as_ref())
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default(),
        max_tokens: config.and_then(|c| c.max_output_tokens),
        seed: config.and_then(|c| c.seed).unwrap_or(0),
    }
}

/// The o200k count of every text, plus 3 per turn.
fn prompt_tokens(sim: &Simulator, ask: &Ask<'_>, request: &GenerateContentRequest) -> u64 {
    sim.tokens.count_text(&ask.texts.concat()) + 3 * request.contents.len() as u64
}

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.finish_reason == "length" {
        "MAX_TOKENS"
    } else {
        "STOP"
    }
}

fn call_parts(reply: &Reply) -> Vec<Part> {
    reply
        .tool_calls
        .iter()
        .flatten()
        .map(|call| Part {
            function_call: Some(FunctionCall {
                id: None,
                name: call.function.name.clone(),
                args: serde_json::from_str(&call.function.arguments).unwrap_or_default(),
            }),
            ..Default::default()
        })
        .collect()
}

fn candidate(index: usize, parts: Vec<Part>, finish: Option<&str>) -> Candidate {
    Candidate {
        content: Content {
            role: Some("model".into()),
            parts,
        },
        finish_reason: finish.map(str::to_owned),
        index: index as u32,
        extra: Default::default(),
    }
}

fn with_total(mut usage: UsageMetadata) -> UsageMetadata {
    usage.total_token_count = usage.prompt_token_count + usage.candidates_token_count;
    usage
}

fn whole(
    replies: &[Reply],
    usage: UsageMetadata,
    model: &str,
    id: &str,
) -> GenerateContentResponse {
    let candidates = replies
        .iter()
        .enumerate()
        .map(|(i, reply)| {
            let mut parts: Vec<Part> = reply.content.iter().map(Part::text).collect();
            parts.extend(call_parts(reply));
            candidate(i, parts, Some(finish_reason(reply)))
        })
        .collect();
    GenerateContentResponse {
        candidates,
        usage_metadata: Some(with_total(usage)),
        model_version: Some(model.into()),
        response_id: Some(id.into()),
        extra: Default::default(),
    }
}

/// The pieces a streamed answer comes in: a few words per piece, function
/// calls whole, the finish reason and the usage on each candidate's last piece.
fn streamed(
    replies: &[Reply],
    usage: UsageMetadata,
    model: &str,
    id: &str,
) -> Vec<GenerateContentResponse> {
    let piece =
        |candidates: Vec<Candidate>, usage: Option<UsageMetadata>| GenerateContentResponse {
            candidates,
            usage_metadata: usage,
            model_version: Some(model.into()),
            response_id: Some(id.into()),
            extra: Default::default(),
        };
    let mut out = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        let words: Vec<&str> = reply
            .content
            .as_deref()
            .map(|t| t.split_inclusive(' ').collect())
            .unwrap_or_default();
        for group in words.chunks(4) {
            out.push(piece(
                vec![candidate(i, vec![Part::text(group.concat())], None)],
                None,
            ));
        }
        let calls = call_parts(reply);
        let last = i + 1 == replies.len();
        out.push(piece(
            vec![candidate(i, calls, Some(finish_reason(reply)))],
            last.then(|| with_total(usage.clone())),
        ));
    }
    out
}
