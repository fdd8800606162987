//! `POST /v1/chat/completions`: parse, route, try candidates in order, answer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use catalog::{Model, TokenUsage};
use futures_util::stream::{self, StreamExt};
use openai::{ChatCompletionChunk, ChatRequest, ErrorBody, Usage};

use crate::error::{Attempt, GatewayError, Soonest};
use crate::health::{Expect, Permit};
use crate::prefer::Prefer;
use crate::providers::{ChunkStream, Provider, ProviderError};
use crate::usage::{Recording, Served};
use crate::{headers, routing, Gateway, RequestId};
use events::Outcome;
use money::Money;

/// `POST /v1/router/explain` (or `GET` with a body): what `model: "auto"`
/// would decide for this chat request, and why, without calling a provider.
pub async fn explain(
    State(gateway): State<Arc<Gateway>>,
    request_headers: HeaderMap,
    body: Body,
) -> Result<Json<crate::auto::Explanation>, GatewayError> {
    super::authenticate(&gateway.keys, &request_headers)?;
    let body = super::read_body(&gateway, &request_headers, body).await?;
    let request: ChatRequest = super::parse(&body.bytes)?;
    validate(&request)?;
    Ok(Json(crate::auto::decide(&request, &gateway.config.auto)))
}

/// The handler.
pub async fn completions(
    State(gateway): State<Arc<Gateway>>,
    Extension(request_id): Extension<RequestId>,
    request_headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let caller = super::authenticate(&gateway.keys, &request_headers)?;
    let allowance = gateway.allowance(&caller)?;
    let body = super::read_body(&gateway, &request_headers, body).await?;
    let request = Arc::new(super::parse::<ChatRequest>(&body.bytes)?);
    let prefer = validate(&request)?;
    let catalog = gateway.catalog.snapshot();
    let plan = routing::plan(&gateway, &catalog, &request, prefer)?;
    let mut candidates = plan.candidates;
    gateway
        .policies
        .filter(caller.account, &mut candidates, |m| m.provider)?;
    gateway.restrict(&caller, allowance, &mut candidates)?;
    let recording = gateway.recording(&caller, &request_id, events::RequestKind::Chat, || {
        let tier = catalog::Tier::parse(&request.model).or(plan.auto.as_ref().map(|d| d.tier));
        let auto = plan.auto.as_ref().map(|d| events::AutoDecision {
            score: d.score,
            tier: d.tier.to_string(),
            contributions: d
                .contributions
                .iter()
                .map(|c| (c.signal.to_owned(), c.points))
                .collect(),
        });
        (tier.map(|t| t.to_string()), auto)
    });
    let work = dispatch(
        Arc::clone(&gateway),
        candidates,
        Arc::clone(&request),
        recording.clone(),
    );
    let result = gateway.detached(recording.as_ref(), work).await;
    result.map(|mut response| {
        if let Some(decision) = &plan.auto {
            auto_headers(&mut response, decision);
        }
        response
    })
}

/// Tries the candidates within the request's total deadline; a request no
/// candidate answered is recorded as failed.
async fn dispatch(
    gateway: Arc<Gateway>,
    candidates: Vec<Arc<Model>>,
    request: Arc<ChatRequest>,
    recording: Option<Arc<Recording>>,
) -> Result<Response, GatewayError> {
    let deadline = gateway.config.total_timeout();
    let mut attempts = Vec::new();
    let outcome = tokio::time::timeout(
        deadline,
        attempt_all(
            &gateway,
            &candidates,
            &request,
            &mut attempts,
            recording.clone(),
        ),
    )
    .await;
    let result = outcome.unwrap_or_else(|_| {
        // The deadline struck mid-attempt: report the finished attempts and the one cut short.
        let spent: u64 = attempts.iter().map(|a| a.latency_ms).sum();
        if let Some(model) = candidates.get(attempts.len()) {
            attempts.push(Attempt {
                provider: model.provider.to_string(),
                model: model.id.clone(),
                status: None,
                error: format!("total deadline of {} ms expired", deadline.as_millis()),
                latency_ms: (deadline.as_millis() as u64).saturating_sub(spent),
                skipped: false,
            });
        }
        Err(GatewayError::AllCandidatesFailed {
            attempts,
            retry_after_s: None,
        })
    });
    if let (Err(error), Some(recording)) = (&result, &recording) {
        recording.fail(error.attempts());
    }
    result
}

/// `X-Model-Router-Auto-Tier` and `-Auto-Score` on an auto-routed response.
fn auto_headers(response: &mut Response, decision: &crate::auto::Explanation) {
    let headers = response.headers_mut();
    headers.insert(
        headers::AUTO_TIER,
        HeaderValue::from_static(decision.tier.as_str()),
    );
    headers.insert(
        headers::AUTO_SCORE,
        HeaderValue::from(u16::from(decision.score)),
    );
}

/// Checks ranges the providers would otherwise reject one by one, and reads `prefer`.
fn validate(request: &ChatRequest) -> Result<Prefer, GatewayError> {
    let bad =
        |message: &str, param: &str| Err(GatewayError::invalid(message, Some(param.to_owned())));
    if request.messages.is_empty() {
        return bad("`messages` must contain at least one message.", "messages");
    }
    if request
        .temperature
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return bad("`temperature` must be between 0 and 2.", "temperature");
    }
    if request.top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return bad("`top_p` must be between 0 and 1.", "top_p");
    }
    if request.n.is_some_and(|n| !(1..=128).contains(&n)) {
        return bad("`n` must be between 1 and 128.", "n");
    }
    if request.max_tokens == Some(0) {
        return bad("`max_tokens` must be at least 1.", "max_tokens");
    }
    if request.max_completion_tokens == Some(0) {
        return bad(
            "`max_completion_tokens` must be at least 1.",
            "max_completion_tokens",
        );
    }
    match request.prefer.as_deref() {
        None => Ok(Prefer::default()),
        Some(p) => p
            .parse()
            .map_err(|message: String| GatewayError::invalid(message, Some("prefer".to_owned()))),
    }
}

/// Tries each candidate in order until one answers; retryable failures fall
/// through, and candidates whose health says they would fail are skipped.
/// Failed and skipped attempts are recorded in `attempts`, which the caller
/// keeps if the deadline strikes.
async fn attempt_all(
    gateway: &Arc<Gateway>,
    candidates: &[Arc<Model>],
    request: &Arc<ChatRequest>,
    attempts: &mut Vec<Attempt>,
    recording: Option<Arc<Recording>>,
) -> Result<Response, GatewayError> {
    let mut soonest = Soonest::default();
    for model in candidates {
        let Some(provider) = gateway.providers.get(model.provider) else {
            continue;
        };
        let expect = Expect {
            stream: request.is_stream(),
            output_tokens: request.requested_output_tokens(),
        };
        let permit = match gateway.health.admit(model.as_ref(), expect) {
            Ok(permit) => permit,
            Err(skip) => {
                soonest.note(skip.retry_in);
                attempts.push(Attempt::skipped(model.as_ref(), skip));
                continue;
            }
        };
        let started = permit.started();
        let tries = attempts.iter().filter(|a| !a.skipped).count() + 1;
        let record = recording.clone().map(|r| (r, attempts.clone()));
        match attempt(
            gateway,
            provider.as_ref(),
            model,
            request,
            permit,
            tries,
            record,
        )
        .await
        {
            Ok(response) => return Ok(response),
            Err(error) => {
                tracing::warn!(provider = %model.provider, model = %model.id, %error, "attempt failed");
                if !error.retryable() {
                    attempts.push(Attempt::failed(model.as_ref(), &error, started.elapsed()));
                    return Err(GatewayError::UpstreamRejected {
                        status: error.status().unwrap_or(502),
                        provider: model.provider.to_string(),
                        message: error.to_string(),
                        attempts: std::mem::take(attempts),
                    });
                }
                if let Some(wait) = error.retry_after() {
                    soonest.note(wait);
                }
                attempts.push(Attempt::failed(model.as_ref(), &error, started.elapsed()));
            }
        }
    }
    Err(GatewayError::AllCandidatesFailed {
        attempts: std::mem::take(attempts),
        retry_after_s: soonest.seconds(),
    })
}

/// One attempt at `model`; its outcome goes to `permit` whatever happens.
async fn attempt(
    gateway: &Arc<Gateway>,
    provider: &dyn Provider,
    model: &Arc<Model>,
    request: &Arc<ChatRequest>,
    mut permit: Permit,
    tries: usize,
    record: Option<(Arc<Recording>, Vec<Attempt>)>,
) -> Result<Response, ProviderError> {
    if request.is_stream() {
        let first = match provider.stream(model, request).await {
            Ok(mut upstream) => match upstream.next().await {
                Some(Ok(first)) => Ok((first, upstream)),
                Some(Err(e)) => Err(e),
                None => Err(ProviderError::Interrupted(
                    "the stream ended before any chunk".into(),
                )),
            },
            Err(e) => Err(e),
        };
        return match first {
            Ok((first, rest)) => {
                permit.first_byte();
                Ok(relay_stream(
                    gateway, model, request, first, rest, permit, tries, record,
                ))
            }
            Err(error) => {
                permit.failed(&error);
                Err(error)
            }
        };
    }
    let answer = provider.complete(model, request).await;
    match answer.and_then(|completion| complete_response(model, completion, tries)) {
        Ok((response, tokens, cost)) => {
            permit.succeeded_whole(tokens.output_tokens);
            if let Some((recording, attempts)) = record {
                recording.record(served(
                    model,
                    tokens,
                    cost,
                    &attempts,
                    Outcome::Completed,
                    None,
                ));
            }
            Ok(response)
        }
        Err(error) => {
            permit.failed(&error);
            Err(error)
        }
    }
}

/// The billing facts of a response served by `model`.
fn served<'a>(
    model: &'a Model,
    tokens: TokenUsage,
    cost: Money,
    attempts: &'a [Attempt],
    outcome: Outcome,
    first_byte: Option<Duration>,
) -> Served<'a> {
    Served {
        model: &model.id,
        provider: model.provider.as_str(),
        free: model.free,
        tokens: events::Tokens {
            input: tokens.input_tokens,
            cached_input: tokens.cached_input_tokens,
            cache_write_input: tokens.cache_write_input_tokens,
            output: tokens.output_tokens,
        },
        cost,
        attempts,
        outcome,
        first_byte,
    }
}

fn token_usage(usage: &Usage) -> TokenUsage {
    TokenUsage {
        input_tokens: usage.prompt_tokens,
        cached_input_tokens: usage.cached_tokens(),
        cache_write_input_tokens: usage.cache_write_tokens(),
        output_tokens: usage.completion_tokens,
    }
}

/// The client's response, the tokens it reports and their cost.
fn complete_response(
    model: &Model,
    mut completion: openai::ChatCompletion,
    attempts: usize,
) -> Result<(Response, TokenUsage, Money), ProviderError> {
    let usage = completion
        .usage
        .as_ref()
        .ok_or_else(|| ProviderError::Protocol("the completion has no usage".into()))?;
    let tokens = token_usage(usage);
    let cost = model.cost(&tokens);
    completion.model = model.id.clone();
    if let Some(usage) = completion.usage.as_mut() {
        // As in a stream's usage chunk: the exact USD cost, as a string.
        usage
            .extra
            .insert("cost".into(), serde_json::Value::String(cost.to_string()));
    }
    let mut response = Json(completion).into_response();
    super::routing_headers(&mut response, model, attempts, Some(cost));
    Ok((response, tokens, cost))
}

/// Relays an upstream stream as OpenAI SSE: chunks with our model id, then one
/// usage chunk (with `usage.cost`, the exact USD cost), then `[DONE]`. A failure
/// after the first chunk ends the stream with an OpenAI-style error event.
#[allow(clippy::too_many_arguments)]
fn relay_stream(
    gateway: &Arc<Gateway>,
    model: &Arc<Model>,
    request: &Arc<ChatRequest>,
    first: ChatCompletionChunk,
    upstream: ChunkStream,
    permit: Permit,
    attempts: usize,
    record: Option<(Arc<Recording>, Vec<Attempt>)>,
) -> Response {
    let ttft = permit.started().elapsed();
    let state = Relay {
        record,
        permit: Some(permit),
        ttft,
        first: Some(first),
        upstream,
        gateway: Arc::clone(gateway),
        request: Arc::clone(request),
        model: Arc::clone(model),
        last: None,
        usage: None,
        generated: String::new(),
        done: false,
    };
    let body = stream::unfold(state, |mut relay| async move {
        if relay.done {
            return None;
        }
        let bytes = relay.step().await;
        Some((Ok::<_, std::convert::Infallible>(bytes), relay))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    super::routing_headers(&mut response, model.as_ref(), attempts, None);
    response
}

struct Relay {
    /// Records the usage once the stream ends, however it ends.
    record: Option<(Arc<Recording>, Vec<Attempt>)>,
    /// The first chunk, received while choosing the candidate, not yet sent.
    first: Option<ChatCompletionChunk>,
    upstream: ChunkStream,
    gateway: Arc<Gateway>,
    request: Arc<ChatRequest>,
    model: Arc<Model>,
    /// The latest chunk, whose id and timestamps the usage chunk reuses.
    last: Option<ChatCompletionChunk>,
    usage: Option<Usage>,
    /// Text generated so far, to count output if the provider sends no usage.
    generated: String,
    done: bool,
    /// Told how the stream ended; dropped unreported if the client leaves.
    permit: Option<Permit>,
    /// When the first chunk came, after the attempt started.
    ttft: Duration,
}

impl Relay {
    async fn step(&mut self) -> Bytes {
        loop {
            let next = match self.first.take() {
                Some(first) => Some(Ok(first)),
                None => self.upstream.next().await,
            };
            match next {
                Some(Ok(chunk)) => {
                    if let Some(event) = self.take_in(chunk) {
                        return event;
                    }
                }
                Some(Err(error)) => {
                    self.done = true;
                    if let Some(permit) = self.permit.take() {
                        permit.failed(&error);
                    }
                    tracing::warn!(model = %self.model.id, %error, "stream failed after the first chunk");
                    let body = ErrorBody::new(
                        "server_error",
                        format!("The provider's stream broke off: {error}"),
                        None,
                        Some("upstream_stream_error"),
                    );
                    // What was generated is owed: the usage so far, then the error.
                    let mut out = self.usage_event(Outcome::Interrupted).to_vec();
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&serde_json::to_vec(&body).unwrap_or_default());
                    out.extend_from_slice(b"\n\n");
                    return Bytes::from(out);
                }
                None => {
                    self.done = true;
                    return self.finish();
                }
            }
        }
    }

    /// Notes a chunk's usage and text; its SSE event, unless it carries no choices.
    fn take_in(&mut self, mut chunk: ChatCompletionChunk) -> Option<Bytes> {
        chunk.model = self.model.id.clone();
        if let Some(usage) = chunk.usage.take() {
            self.usage = Some(usage);
        }
        for choice in &chunk.choices {
            if let Some(text) = &choice.delta.content {
                self.generated.push_str(text);
            }
        }
        let event = (!chunk.choices.is_empty()).then(|| sse_event(&chunk));
        self.last = Some(chunk);
        event
    }

    /// The usage chunk and `[DONE]`.
    fn finish(&mut self) -> Bytes {
        let usage_event = self.usage_event(Outcome::Completed);
        let mut out = usage_event.to_vec();
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }

    /// The usage chunk, with `usage.cost`. A provider that sent no usage (or
    /// broke off before it) is billed on our own o200k count of the prompt and
    /// of what it streamed. Settles a permit still open as a success.
    fn usage_event(&mut self, outcome: Outcome) -> Bytes {
        let mut usage = self.final_usage();
        if let Some(permit) = self.permit.take() {
            permit.succeeded_stream(self.ttft, usage.completion_tokens);
        }
        let cost = self.bill(&usage, outcome);
        usage
            .extra
            .insert("cost".into(), serde_json::Value::String(cost.to_string()));
        let mut chunk = self.last.take().unwrap_or_else(|| ChatCompletionChunk {
            id: String::new(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            extra: Default::default(),
        });
        chunk.model = self.model.id.clone();
        chunk.choices.clear();
        chunk.usage = Some(usage);
        sse_event(&chunk)
    }

    /// Records the usage (once) and returns its cost.
    fn bill(&mut self, usage: &Usage, outcome: Outcome) -> Money {
        let tokens = token_usage(usage);
        let cost = self.model.cost(&tokens);
        if let Some((recording, attempts)) = self.record.take() {
            let first_byte = Some(self.ttft);
            recording.record(served(
                &self.model,
                tokens,
                cost,
                &attempts,
                outcome,
                first_byte,
            ));
        }
        cost
    }

    /// The provider's usage, or, if it sent none (or broke off before it),
    /// our own o200k count of the prompt and of what it streamed.
    fn final_usage(&mut self) -> Usage {
        self.usage.take().unwrap_or_else(|| {
            let counter = &self.gateway.tokens;
            let completion = counter.count_text(&self.generated);
            let prompt = counter.count(&tokens::Prompt::of(&self.request));
            Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                ..Default::default()
            }
        })
    }
}

/// A client that leaves mid-stream, or before its first chunk, is billed
/// for what was generated.
impl Drop for Relay {
    fn drop(&mut self) {
        if self.record.is_some() {
            if let Some(first) = self.first.take() {
                self.take_in(first);
            }
            let usage = self.final_usage();
            self.bill(&usage, Outcome::ClientDisconnected);
        }
    }
}

fn sse_event(chunk: &ChatCompletionChunk) -> Bytes {
    let mut out = b"data: ".to_vec();
    if serde_json::to_writer(&mut out, chunk).is_err() {
        out.truncate(6);
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalog::Catalog;

    #[test]
    fn cache_writes_reported_by_a_provider_are_billed_at_their_rate() {
        // What the Anthropic adapter reports for 1,000 input tokens of which
        // 600 were written to the prompt cache, and 10 output tokens.
        let usage: Usage = serde_json::from_value(serde_json::json!({
            "prompt_tokens": 1_000, "completion_tokens": 10, "total_tokens": 1_010,
            "prompt_tokens_details": {"cached_tokens": 0},
            "cache_creation_input_tokens": 600
        }))
        .unwrap();
        let tokens = token_usage(&usage);
        assert_eq!(tokens.cache_write_input_tokens, 600);
        let catalog = Catalog::builtin();
        let sonnet = catalog.model("claude-sonnet-4-6").unwrap();
        // 400 × $3 + 600 × $3.75 + 10 × $15 per million = 3,600 µ$.
        assert_eq!(sonnet.cost(&tokens).to_string(), "0.0036");
    }
}
