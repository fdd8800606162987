//! Embeddings: from `model` (an alias or a pinned id) to candidates, and
//! from one client request to as many provider calls as their limits need.
//!
//! 1. Target: `embed-small` / `embed-large` / `embed-titan` name the catalog's
//!    embedding models that carry the alias; any other name must be an
//!    embedding model id (pinned, no fallback).
//! 2. Drop models whose provider is not configured, that cannot take the
//!    input (token ids go to OpenAI models only), cannot produce the asked
//!    `dimensions`, or would truncate an input longer than they accept.
//! 3. Drop models whose provider the account blocked (403 when none is
//!    left); an account without credit is refused (402): every embedding
//!    model is paid.
//! 4. Order the rest by `prefer`, as chat does; `fast` counts the rounds of
//!    calls a model needs for this many inputs (Titan takes one per call).
//! 5. Try candidates in order. Each one embeds every input: the inputs are
//!    split into calls within its batch limits ([`batch`]), sent at most
//!    `concurrency` at a time, each admitted by the model's breaker. A call
//!    that fails is retried once (after waiting out a rate limit of up to
//!    2 s); if it fails again the whole request moves to the next
//!    candidate, so a response never mixes vectors of two models and never
//!    lacks one.

pub mod batch;
pub mod vector;

use std::sync::Arc;
use std::time::Duration;

use catalog::{Catalog, DimensionPlan, EmbeddingAlias, EmbeddingModel};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::dispatch::failover::{self, Failure};
use crate::error::{GatewayError, Unconfigured, Unpaid};
use crate::health::Expect;
use crate::prefer::{self, Prefer};
use crate::providers::{EmbedCall, EmbedInput, Embedded, Provider, ProviderError, Unsupported};
use crate::routing::Access;
use crate::Gateway;

/// Embedding settings (the `[gateway.embeddings]` config section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// Provider calls in flight at once for one request (default 16).
    pub concurrency: usize,
    /// Inputs one request may carry (default 2,048, as OpenAI allows).
    pub max_inputs: usize,
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        EmbeddingsConfig {
            concurrency: 16,
            max_inputs: 2048,
        }
    }
}

/// A validated request: its inputs with the gateway's token count of each.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The inputs, in order.
    pub items: Vec<EmbedInput>,
    /// Tokens of each input (o200k for texts, the length of token ids).
    pub tokens: Vec<u64>,
    /// The vector size asked for.
    pub dimensions: Option<u32>,
    /// The client's end-user id.
    pub user: Option<String>,
}

impl Inputs {
    fn are_tokens(&self) -> bool {
        self.items
            .first()
            .is_some_and(|i| matches!(i, EmbedInput::Tokens(_)))
    }
}

/// A candidate and how it produces the asked size.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub model: Arc<EmbeddingModel>,
    pub dimensions: DimensionPlan,
}

/// The candidates for `model`, best first, that `access` may use.
pub fn plan(
    gateway: &Gateway,
    catalog: &Catalog,
    model: &str,
    inputs: &Inputs,
    prefer: Prefer,
    access: Access<'_>,
) -> Result<Vec<Candidate>, GatewayError> {
    if !access.allowance.paid {
        return Err(GatewayError::InsufficientCredits(Unpaid::Embeddings));
    }
    let (alias, models): (Option<EmbeddingAlias>, Vec<Arc<EmbeddingModel>>) =
        match EmbeddingAlias::parse(model) {
            Some(alias) => (Some(alias), catalog.embedding_alias(alias).cloned().collect()),
            None => match catalog.embedding_model(model) {
                Some(m) => (None, vec![Arc::clone(m)]),
                None if catalog.model(model).is_some() || catalog::Tier::parse(model).is_some() => {
                    return Err(GatewayError::invalid(
                        format!("`{model}` is a chat model; /v1/embeddings takes embed-small, embed-large, embed-titan or an embedding model id."),
                        Some("model".to_owned()),
                    ))
                }
                None => return Err(GatewayError::EmbeddingModelNotFound(model.to_owned())),
            },
        };
    let unconfigured = match (alias, models.first()) {
        (None, Some(m)) => Unconfigured::Model {
            id: m.id.clone(),
            provider: m.provider,
        },
        _ => Unconfigured::Alias(model.to_owned()),
    };
    let configured: Vec<_> = models
        .into_iter()
        .filter(|m| gateway.providers.get(m.provider).is_some())
        .collect();
    if configured.is_empty() {
        return Err(GatewayError::NoProvider(unconfigured));
    }
    let mut refusal: Option<(Unsupported, Option<&'static str>)> = None;
    let mut candidates: Vec<Candidate> = Vec::new();
    for m in configured {
        match carries(gateway, &m, inputs) {
            Ok(dimensions) => candidates.push(Candidate {
                model: m,
                dimensions,
            }),
            Err(why) => {
                refusal.get_or_insert(why);
            }
        }
    }
    if candidates.is_empty() {
        let (why, code) = refusal.expect("a candidate was refused, so a reason was recorded");
        let message = match alias {
            Some(alias) => format!("No {alias} model can serve this request: {}.", why.reason),
            None => format!("{}.", why.reason),
        };
        return Err(GatewayError::InvalidRequest {
            message,
            param: Some(why.param.to_owned()),
            code,
        });
    }
    gateway
        .policies
        .filter(access.caller.account, &mut candidates, |c| c.model.provider)?;
    let mut models: Vec<Arc<EmbeddingModel>> =
        candidates.iter().map(|c| Arc::clone(&c.model)).collect();
    let concurrency = gateway.config.embeddings.concurrency.max(1);
    prefer::rank(prefer, &mut models, |m| {
        let calls = inputs
            .items
            .len()
            .div_ceil(m.batch.max_inputs.max(1) as usize);
        let rounds = calls.div_ceil(concurrency).max(1);
        gateway.health.speed(m).ttft_ms * rounds as f64
    });
    Ok(models
        .into_iter()
        .filter_map(|m| {
            let at = candidates.iter().position(|c| Arc::ptr_eq(&c.model, &m))?;
            Some(candidates.swap_remove(at))
        })
        .collect())
}

/// How `model` would produce the request's vectors, or why it cannot,
/// with the error code to report.
fn carries(
    gateway: &Gateway,
    model: &EmbeddingModel,
    inputs: &Inputs,
) -> Result<DimensionPlan, (Unsupported, Option<&'static str>)> {
    if let Some(provider) = gateway.providers.get(model.provider) {
        provider
            .check_embedding(model, inputs.are_tokens())
            .map_err(|u| (u, None))?;
    }
    let dimensions = model.dimension_plan(inputs.dimensions).map_err(|largest| {
        let reason = format!(
            "`dimensions` must be from 1 to {largest} for `{}`",
            model.id
        );
        (
            Unsupported {
                param: "dimensions",
                reason,
            },
            None,
        )
    })?;
    let limit = u64::from(model.max_input_tokens);
    if let Some((i, &tokens)) = inputs.tokens.iter().enumerate().find(|(_, &t)| t > limit) {
        let reason = format!(
            "input {i} has about {tokens} tokens; `{}` accepts at most {limit} per input",
            model.id
        );
        return Err((
            Unsupported {
                param: "input",
                reason,
            },
            Some("context_length_exceeded"),
        ));
    }
    Ok(dimensions)
}

/// A candidate is tried by the shared failover loop as its model.
impl failover::Target for Candidate {
    type Model = EmbeddingModel;
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }
}

/// The vectors of every input, in order, and the input tokens billed.
#[derive(Debug)]
pub struct Vectors {
    pub vectors: Vec<Vec<f32>>,
    pub input_tokens: u64,
}

/// Embeds every input with `candidate`.
pub async fn embed_all(
    gateway: &Gateway,
    provider: &dyn Provider,
    candidate: &Candidate,
    inputs: &Inputs,
) -> Result<Vectors, Failure> {
    let model = candidate.model.as_ref();
    let calls = batch::split(&inputs.tokens, model.batch);
    let concurrency = gateway.config.embeddings.concurrency.max(1);
    let answers: Vec<(Embedded, u64)> = stream::iter(calls)
        .map(|range| {
            let counted: u64 = inputs.tokens[range.clone()].iter().sum();
            let call = EmbedCall {
                inputs: &inputs.items[range],
                dimensions: candidate.dimensions.ask,
                user: inputs.user.as_deref(),
            };
            async move {
                Ok((
                    call_once_retried(gateway, provider, model, &call).await?,
                    counted,
                ))
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let mut vectors = Vec::with_capacity(inputs.items.len());
    let mut input_tokens = 0;
    for (answer, counted) in answers {
        input_tokens += answer.input_tokens.unwrap_or(counted);
        for v in answer.vectors {
            let fitted = vector::fit(v, candidate.dimensions.keep)
                .map_err(|e| Failure::Failed(ProviderError::Protocol(e)))?;
            vectors.push(fitted);
        }
    }
    Ok(Vectors {
        vectors,
        input_tokens,
    })
}

/// The longest a call waits out a rate limit before its one retry; a longer
/// wait sends the request to the next model instead.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(2);
/// The wait before retrying after a 429 that named no Retry-After.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_millis(250);

/// One provider call, admitted by the model's health, with one retry: at
/// once after a failure another try may cure, or after waiting out a short
/// rate limit (a 429's Retry-After, or the model's cool-down when a sibling
/// call of the same fan-out was the one rate limited). A refused key, an
/// unknown model, a long rate limit or an open breaker fail at once.
async fn call_once_retried(
    gateway: &Gateway,
    provider: &dyn Provider,
    model: &EmbeddingModel,
    call: &EmbedCall<'_>,
) -> Result<Embedded, Failure> {
    let expect = Expect {
        stream: false,
        output_tokens: Some(0),
    };
    let mut retried = false;
    loop {
        let permit = match gateway.health.admit(model, expect) {
            Ok(permit) => permit,
            Err(skip) if !retried && skip.retry_in <= MAX_RATE_LIMIT_WAIT => {
                retried = true;
                tokio::time::sleep(skip.retry_in).await;
                continue;
            }
            Err(skip) => return Err(Failure::Skipped(skip)),
        };
        match provider.embed(model, call).await {
            Ok(answer) => {
                permit.succeeded_whole(0);
                return Ok(answer);
            }
            Err(error) => {
                permit.failed(&error);
                let wait = match error.status() {
                    Some(429) => error.retry_after().unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
                    Some(401 | 403 | 404) => Duration::MAX,
                    _ if error.retryable() => Duration::ZERO,
                    _ => Duration::MAX,
                };
                if retried || wait > MAX_RATE_LIMIT_WAIT {
                    return Err(Failure::Failed(error));
                }
                retried = true;
                tokio::time::sleep(wait).await;
            }
        }
    }
}
