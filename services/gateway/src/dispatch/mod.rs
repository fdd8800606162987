//! From a parsed chat request to an answer, for every ingress that speaks
//! chat (OpenAI Chat Completions, Anthropic Messages, OpenAI Responses):
//!
//! 1. [`validate`] the request and read `prefer`;
//! 2. [`routing::plan`] the candidates (every filter, the account's blocks
//!    and credit included, lives there);
//! 3. start the usage [`Recording`];
//! 4. run the [`failover`] loop, detached from the client's connection, each
//!    attempt admitted by the model's health;
//! 5. hand back an [`Answer`]: a whole completion (usage and cost in it) or a
//!    [`Relay`] of the stream, which each ingress renders in its own format.

pub mod failover;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::Response;
use catalog::{Model, TokenUsage};
use futures_util::StreamExt;
use openai::{ChatCompletion, ChatRequest, Usage};

use crate::auto::Explanation;
use crate::error::{Attempt, GatewayError};
use crate::handlers::Received;
use crate::health::Expect;
use crate::prefer::Prefer;
use crate::providers::{Provider, ProviderError};
use crate::usage::{Recording, Served};
use crate::{headers, routing, Gateway, RequestId};
use events::Outcome;
pub use failover::Failure;
use money::Money;
pub use relay::{Encoder, Relay, Relayed};

/// What the serving model answered. Both variants are large; an answer is
/// moved once per request, so neither is boxed.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    /// A whole completion, `model` ours and `usage.cost` set.
    Whole {
        completion: ChatCompletion,
        cost: Money,
    },
    /// A stream, relayed as it comes.
    Stream(Relay),
}

/// An answered chat request and how it was routed.
pub struct Routed {
    /// What the model answered.
    pub answer: Answer,
    /// How the request got there.
    pub route: Route,
}

impl Routed {
    /// The response in an ingress's format: `whole` renders a completion,
    /// the encoder `stream` makes renders a stream; the routing headers are
    /// set on either.
    pub fn respond<E: Encoder>(
        self,
        whole: impl FnOnce(ChatCompletion) -> Response,
        stream: impl FnOnce() -> E,
    ) -> Response {
        let mut response = match self.answer {
            Answer::Whole { completion, .. } => whole(completion),
            Answer::Stream(relay) => relay.into_response(stream()),
        };
        self.route.headers(&mut response);
        response
    }
}

/// How a request was routed: what its response's headers say.
pub struct Route {
    /// The model that answered.
    pub model: Arc<Model>,
    /// Provider calls made, the one that answered included.
    pub tries: usize,
    /// The cost, known at once for a whole completion (a stream's comes at its end).
    pub cost: Option<Money>,
    /// How `auto` chose the tier, when the request asked for it.
    pub auto: Option<Explanation>,
}

impl Route {
    /// Sets the routing headers (model, provider, attempts, cost, auto
    /// decision) on the ingress's response.
    pub fn headers(&self, response: &mut Response) {
        crate::handlers::routing_headers(response, self.model.as_ref(), self.tries, self.cost);
        if let Some(decision) = &self.auto {
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
    }
}

/// Routes `request` for `caller`, who may use what `allowance` says (read
/// before the body, so a refusal costs no upload), and returns the first
/// answer (steps 1–5 above).
pub async fn chat(
    gateway: &Arc<Gateway>,
    request_id: &RequestId,
    received: Received<ChatRequest>,
) -> Result<Routed, GatewayError> {
    let Received {
        caller,
        allowance,
        tags,
        mut request,
    } = received;
    let caller = &caller;
    let prefer = validate(&request)?;
    if !caller.limits.allowed.is_empty() {
        let asked: Vec<&str> = std::iter::once(request.model.as_str())
            .chain(request.models.iter().flatten().map(String::as_str))
            .filter(|m| !m.is_empty())
            .collect();
        crate::key_limits::check_allowed(&caller.limits, &asked)?;
    }
    let attribution = crate::attribution::of_chat(tags, &mut request)?;
    let request = Arc::new(request);
    let catalog = gateway.catalog.snapshot();
    let access = routing::Access { caller, allowance };
    let plan = routing::plan(gateway, &catalog, &request, prefer, access)?;
    let candidates = plan.candidates;
    let kind = events::RequestKind::Chat;
    let recording = gateway.recording(caller, request_id, kind, attribution, || {
        let tier = catalog::Tier::parse(&request.model).or(plan.auto.as_ref().map(|d| d.tier));
        let auto = plan.auto.as_ref().map(|d| events::AutoDecision {
            score: d.score,
            tier: d.tier.to_string(),
            contributions: d
                .reasons(events::AUTO_CONTRIBUTIONS)
                .map(|c| (c.signal.to_string(), c.points.round() as i32))
                .collect(),
        });
        (tier.map(|t| t.to_string()), auto, Some(prefer))
    });
    if let Some(recording) = &recording {
        if gateway.policies.captures(caller.account) {
            recording.capture(events::ContentRecorded::bounded_input(
                request.messages.iter().map(|m| {
                    (
                        m.role.as_str().to_owned(),
                        m.texts().collect::<Vec<_>>().join("\n"),
                    )
                }),
            ));
        }
    }
    let work = serve(Arc::clone(gateway), candidates, request, recording.clone());
    let (answer, model, tries) = gateway.detached(recording.as_ref(), work).await?;
    let cost = match &answer {
        Answer::Whole { cost, .. } => Some(*cost),
        Answer::Stream(_) => None,
    };
    Ok(Routed {
        answer,
        route: Route {
            model,
            tries,
            cost,
            auto: plan.auto,
        },
    })
}

/// Runs the failover loop over `candidates`; a request no candidate
/// answered is recorded as failed.
async fn serve(
    gateway: Arc<Gateway>,
    candidates: Vec<Arc<Model>>,
    request: Arc<ChatRequest>,
    recording: Option<Arc<Recording>>,
) -> Result<(Answer, Arc<Model>, usize), GatewayError> {
    let chat = ChatAttempts {
        gateway: Arc::clone(&gateway),
        request,
        recording: recording.clone(),
    };
    let result = failover::run(&gateway, &candidates, &chat).await;
    match result {
        Ok(won) => {
            let tries = won.tries();
            Ok((won.value, Arc::clone(won.target), tries))
        }
        Err(error) => {
            if let Some(recording) = &recording {
                recording.fail(error.attempts());
            }
            Err(error)
        }
    }
}

/// Chat calls: the request, and where their usage goes.
struct ChatAttempts {
    gateway: Arc<Gateway>,
    request: Arc<ChatRequest>,
    recording: Option<Arc<Recording>>,
}

impl failover::Attempter<Arc<Model>> for ChatAttempts {
    type Answer = Answer;

    async fn attempt(
        &self,
        model: &Arc<Model>,
        provider: &dyn Provider,
        before: &[Attempt],
    ) -> Result<Answer, Failure> {
        let record = self.recording.clone().map(|r| (r, before.to_vec()));
        attempt(&self.gateway, provider, model, &self.request, record).await
    }
}

/// One attempt at `model`, admitted by its health; the outcome goes to the
/// health permit whatever happens. A stream counts as answered once its
/// first chunk arrives.
async fn attempt(
    gateway: &Arc<Gateway>,
    provider: &dyn Provider,
    model: &Arc<Model>,
    request: &Arc<ChatRequest>,
    record: Option<(Arc<Recording>, Vec<Attempt>)>,
) -> Result<Answer, Failure> {
    let expect = Expect {
        stream: request.is_stream(),
        output_tokens: request.requested_output_tokens(),
    };
    let mut permit = gateway
        .health
        .admit(model.as_ref(), expect)
        .map_err(Failure::Skipped)?;
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
            Ok((first, upstream)) => {
                permit.first_byte();
                Ok(Answer::Stream(Relay::new(relay::Start {
                    gateway: Arc::clone(gateway),
                    model: Arc::clone(model),
                    request: Arc::clone(request),
                    first,
                    upstream,
                    permit,
                    record,
                })))
            }
            Err(error) => {
                permit.failed(&error);
                Err(Failure::Failed(error))
            }
        };
    }
    let answer = provider.complete(model, request).await;
    match answer.and_then(|completion| priced(model, completion)) {
        Ok((completion, tokens, cost)) => {
            permit.succeeded_whole(tokens.output_tokens);
            if let Some((recording, attempts)) = record {
                recording.record(served(
                    model,
                    tokens,
                    cost,
                    &attempts,
                    Ending {
                        outcome: Outcome::Completed,
                        first_byte: None,
                        finish_reasons: completion
                            .choices
                            .iter()
                            .filter_map(|c| c.finish_reason.clone())
                            .collect(),
                        output: recording.captures().then(|| answer_text(&completion)),
                    },
                ));
            }
            Ok(Answer::Whole { completion, cost })
        }
        Err(error) => {
            permit.failed(&error);
            Err(Failure::Failed(error))
        }
    }
}

/// The completion with our model id and `usage.cost` (the exact USD cost,
/// as a string, as in a stream's usage chunk), its tokens and their cost.
fn priced(
    model: &Model,
    mut completion: ChatCompletion,
) -> Result<(ChatCompletion, TokenUsage, Money), ProviderError> {
    let usage = completion
        .usage
        .as_mut()
        .ok_or_else(|| ProviderError::Protocol("the completion has no usage".into()))?;
    let tokens = token_usage(usage);
    let cost = model.cost(&tokens);
    usage
        .extra
        .insert("cost".into(), serde_json::Value::String(cost.to_string()));
    completion.model.clone_from(&model.id);
    Ok((completion, tokens, cost))
}

/// How a served response ended, beyond its tokens and cost.
struct Ending {
    outcome: Outcome,
    first_byte: Option<Duration>,
    finish_reasons: Vec<String>,
    /// The answer's text, when the account's traces capture it.
    output: Option<String>,
}

/// The billing facts of a response served by `model`.
fn served<'a>(
    model: &'a Model,
    tokens: TokenUsage,
    cost: Money,
    attempts: &'a [Attempt],
    ending: Ending,
) -> Served<'a> {
    let Ending {
        outcome,
        first_byte,
        finish_reasons,
        output,
    } = ending;
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
        finish_reasons,
        output,
    }
}

/// The text of a whole answer's choices, for a trace that captures it.
fn answer_text(completion: &ChatCompletion) -> String {
    let texts: Vec<&str> = completion
        .choices
        .iter()
        .filter_map(|c| c.message.content.as_deref())
        .collect();
    texts.join("\n")
}

/// The tokens an OpenAI-shaped usage reports, as the catalog prices them.
pub fn token_usage(usage: &Usage) -> TokenUsage {
    TokenUsage {
        input_tokens: usage.prompt_tokens,
        cached_input_tokens: usage.cached_tokens(),
        cache_write_input_tokens: usage.cache_write_tokens(),
        output_tokens: usage.completion_tokens,
    }
}

/// Checks ranges the providers would otherwise reject one by one, and reads `prefer`.
pub fn validate(request: &ChatRequest) -> Result<Prefer, GatewayError> {
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
