//! `POST {prefix}/chat/completions` and `GET {prefix}/models` in the OpenAI
//! dialects, with each provider's documented deviations.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use catalog::ProviderId;
use openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatRequest, Choice, ChunkChoice, Delta,
    ErrorBody, Extra, FunctionCallDelta, ModelList, ModelObject, PromptTokensDetails,
    ToolCallDelta, Usage,
};
use serde_json::json;

use crate::generate::{self, Ask, Reply};
use crate::{Dialect, Simulator};

type Ctx = State<(Arc<Simulator>, Dialect)>;

pub(crate) fn error(
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    (status, Json(ErrorBody::new(kind, message, param, code))).into_response()
}

pub(crate) fn authorized(sim: &Simulator, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", sim.config.api_key);
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `GET {prefix}/models`: the provider's models from the catalog.
pub(crate) async fn list_models(State((sim, dialect)): Ctx, headers: HeaderMap) -> Response {
    if !authorized(&sim, &headers) {
        return invalid_key();
    }
    let catalog = sim.catalog.snapshot();
    let data = catalog
        .models()
        .iter()
        .filter(|m| m.provider == dialect.provider)
        .map(|m| ModelObject {
            id: m.provider_model_id.clone(),
            object: "model".into(),
            created: 1_700_000_000,
            owned_by: dialect.provider.to_string(),
            extra: Extra::new(),
        })
        .collect();
    Json(ModelList {
        object: "list".into(),
        data,
    })
    .into_response()
}

pub(crate) fn invalid_key() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        "Incorrect API key provided.",
        None,
        Some("invalid_api_key"),
    )
}

/// `POST {prefix}/chat/completions`.
pub(crate) async fn handle(
    State((sim, dialect)): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&sim, &headers) {
        return invalid_key();
    }
    sim.recorder.record(dialect.provider, &body);
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("We could not parse the JSON body of your request: {e}"),
                None,
                None,
            )
        }
    };
    if let Some(rejection) = validate(&sim, dialect, &request) {
        return rejection;
    }
    let fault = match sim.faults.take(&headers, dialect.provider, &request.model) {
        Ok(f) => f.unwrap_or_default(),
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                message,
                None,
                None,
            )
        }
    };
    if let Some(ms) = fault.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(response) = fault.error(injected_error) {
        return response;
    }
    let n = request.n.unwrap_or(1);
    let ask = Ask::of_openai(&request);
    let replies: Vec<Reply> = (0..n)
        .map(|i| generate::reply(&ask, &request.model, i))
        .collect();
    let prompt_tokens = sim.tokens.count(&tokens::Prompt::of(&request));
    let usage = usage(
        prompt_tokens,
        replies.iter().map(|r| r.completion_tokens).sum(),
    );
    let id = format!("chatcmpl-{:016x}", ask.seed_of(&request.model, u32::MAX));
    if request.is_stream() {
        let include_usage = request
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let chunks = stream_chunks(
            dialect,
            &id,
            &request.model,
            &replies,
            include_usage.then_some(usage),
        );
        let delay = fault
            .chunk_delay_ms
            .map_or(sim.chunk_delay(), Duration::from_millis);
        return sse(chunks, delay, fault.cut_after_chunks);
    }
    let choices = replies
        .into_iter()
        .enumerate()
        .map(|(i, r)| Choice {
            index: i as u32,
            message: AssistantMessage {
                role: "assistant".into(),
                content: r.content,
                tool_calls: r.tool_calls,
                extra: refusal(),
            },
            finish_reason: Some(r.finish_reason.into()),
            extra: logprobs(),
        })
        .collect();
    let completion = ChatCompletion {
        id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: request.model.clone(),
        choices,
        usage: Some(usage.clone()),
        extra: dialect_extras(dialect, &usage, true),
    };
    Json(completion).into_response()
}

fn refusal() -> Extra {
    let mut extra = Extra::new();
    extra.insert("refusal".into(), serde_json::Value::Null);
    extra
}

fn logprobs() -> Extra {
    let mut extra = Extra::new();
    extra.insert("logprobs".into(), serde_json::Value::Null);
    extra
}

/// What the real providers refuse before generating anything.
fn validate(sim: &Simulator, dialect: Dialect, request: &ChatRequest) -> Option<Response> {
    let bad = |message: String, param: &str, code: &str| {
        Some(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
            Some(param),
            Some(code),
        ))
    };
    let Some(model) = sim.model(dialect.provider, &request.model) else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                request.model
            ),
            None,
            Some("model_not_found"),
        ));
    };
    if request.messages.is_empty() {
        return bad(
            "[] is too short - 'messages'".into(),
            "messages",
            "invalid_value",
        );
    }
    let n = request.n.unwrap_or(1);
    if n == 0 || n > 128 || (dialect.single_choice && n != 1) {
        return bad(
            format!(
                "'n' : number must be at most {}",
                if dialect.single_choice { 1 } else { 128 }
            ),
            "n",
            "invalid_value",
        );
    }
    if model.reasoning && dialect.provider == ProviderId::Openai {
        if request.max_tokens.is_some() {
            return bad(
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.".into(),
                "max_tokens",
                "unsupported_parameter",
            );
        }
        if request.temperature.is_some_and(|t| t != 1.0) {
            return bad(
                "Unsupported value: 'temperature' does not support this value with this model. Only the default (1) value is supported.".into(),
                "temperature",
                "unsupported_value",
            );
        }
    }
    None
}

pub(crate) fn injected_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, code, message) = match status.as_u16() {
        429 => (
            "requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests. Please try again later.",
        ),
        401 => (
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided.",
        ),
        400 => (
            "invalid_request_error",
            "invalid_value",
            "The request was rejected by the simulated provider.",
        ),
        503 => (
            "server_error",
            "service_unavailable",
            "The server is overloaded or not ready yet.",
        ),
        _ => (
            "server_error",
            "server_error",
            "The server had an error while processing your request.",
        ),
    };
    error(status, kind, message, None, Some(code))
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: 0,
            extra: Extra::new(),
        }),
        completion_tokens_details: Some(json!({"reasoning_tokens": 0})),
        extra: Extra::new(),
    }
}

/// The fields each provider adds beyond OpenAI's shape.
fn dialect_extras(dialect: Dialect, usage: &Usage, final_message: bool) -> Extra {
    let mut extra = Extra::new();
    let timing = json!({"queue_time": 0.001, "prompt_time": 0.002, "completion_time": 0.01, "total_time": 0.013});
    match dialect.provider {
        ProviderId::Openai => {
            extra.insert("system_fingerprint".into(), json!("fp_sim"));
            extra.insert("service_tier".into(), json!("default"));
        }
        ProviderId::Groq => {
            let mut x_groq = json!({"id": "req_sim"});
            if final_message {
                x_groq["usage"] = serde_json::to_value(usage).unwrap_or_default();
            }
            extra.insert("x_groq".into(), x_groq);
            extra.insert("system_fingerprint".into(), json!("fp_sim"));
        }
        ProviderId::Cerebras if final_message => {
            extra.insert("time_info".into(), timing);
        }
        _ => {}
    }
    extra
}

fn stream_chunks(
    dialect: Dialect,
    id: &str,
    model: &str,
    replies: &[Reply],
    usage: Option<Usage>,
) -> Vec<String> {
    let created = unix_now();
    let chunk = |choices: Vec<ChunkChoice>, usage: Option<Usage>, last: bool| {
        let extra = match &usage {
            Some(u) => dialect_extras(dialect, u, last),
            None => dialect_extras(dialect, &Usage::default(), false),
        };
        let c = ChatCompletionChunk {
            id: id.into(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.into(),
            choices,
            usage,
            extra,
        };
        serde_json::to_string(&c).unwrap_or_default()
    };
    let delta_choice = |index: usize, delta: Delta, finish: Option<&str>| ChunkChoice {
        index: index as u32,
        delta,
        finish_reason: finish.map(str::to_owned),
        extra: logprobs(),
    };
    let mut out = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        out.push(chunk(
            vec![delta_choice(
                i,
                Delta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    ..Default::default()
                },
                None,
            )],
            None,
            false,
        ));
        if let Some(text) = &reply.content {
            for piece in text.split_inclusive(' ') {
                out.push(chunk(
                    vec![delta_choice(
                        i,
                        Delta {
                            content: Some(piece.into()),
                            ..Default::default()
                        },
                        None,
                    )],
                    None,
                    false,
                ));
            }
        }
        for (k, call) in reply.tool_calls.iter().flatten().enumerate() {
            let head = ToolCallDelta {
                index: k as u32,
                id: Some(call.id.clone()),
                kind: Some("function".into()),
                function: Some(FunctionCallDelta {
                    name: Some(call.function.name.clone()),
                    arguments: Some(String::new()),
                }),
            };
            out.push(chunk(
                vec![delta_choice(
                    i,
                    Delta {
                        tool_calls: Some(vec![head]),
                        ..Default::default()
                    },
                    None,
                )],
                None,
                false,
            ));
            let args: Vec<char> = call.function.arguments.chars().collect();
            for part in args.chunks(8) {
                let delta = ToolCallDelta {
                    index: k as u32,
                    id: None,
                    kind: None,
                    function: Some(FunctionCallDelta {
                        name: None,
                        arguments: Some(part.iter().collect()),
                    }),
                };
                out.push(chunk(
                    vec![delta_choice(
                        i,
                        Delta {
                            tool_calls: Some(vec![delta]),
                            ..Default::default()
                        },
                        None,
                    )],
                    None,
                    false,
                ));
            }
        }
        out.push(chunk(
            vec![delta_choice(i, Delta::default(), Some(reply.finish_reason))],
            None,
            false,
        ));
    }
    if let Some(usage) = usage {
        out.push(chunk(Vec::new(), Some(usage), true));
    }
    out
}

/// `chunks` as SSE data frames, then `[DONE]`.
fn sse(chunks: Vec<String>, delay: Duration, cut_after: Option<u32>) -> Response {
    let frames = chunks
        .into_iter()
        .map(|data| format!("data: {data}\n\n"))
        .chain(["data: [DONE]\n\n".to_owned()])
        .collect();
    crate::sse::respond(frames, delay, cut_after)
}
