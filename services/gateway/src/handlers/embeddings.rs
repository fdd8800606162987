//! `POST /v1/embeddings`: parse, route, embed every input with one model,
//! answer in OpenAI's shape with routing headers and the cost.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use openai::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage,
    EmbeddingVector, EncodingFormat,
};

use crate::embeddings::{self, vector, Candidate, Failure, Inputs, Vectors};
use crate::error::{Attempt, GatewayError, Soonest};
use crate::prefer::Prefer;
use crate::providers::EmbedInput;
use crate::usage::{Recording, Served};
use crate::{Gateway, RequestId};
use events::{Outcome, RequestKind, Tokens};
use money::Money;

/// The handler.
pub async fn create(
    State(gateway): State<Arc<Gateway>>,
    Extension(request_id): Extension<RequestId>,
    request_headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, GatewayError> {
    let caller = super::authenticate(&gateway.keys, &request_headers)?;
    if !gateway.allowance(&caller)?.paid {
        return Err(GatewayError::InsufficientCredits(
            "The account has no credit left; embedding models are all paid. Add credit.".into(),
        ));
    }
    let body = super::read_body(&gateway, &request_headers, body).await?;
    let request: EmbeddingRequest = super::parse(&body.bytes)?;
    let prefer = prefer_of(&request)?;
    let format = request.encoding_format.unwrap_or_default();
    let inputs = inputs(&gateway, request.input, request.dimensions, request.user)?;
    let catalog = gateway.catalog.snapshot();
    let mut candidates = embeddings::plan(&gateway, &catalog, &request.model, &inputs, prefer)?;
    gateway
        .policies
        .filter(caller.account, &mut candidates, |c| c.model.provider)?;
    let recording = gateway.recording(&caller, &request_id, RequestKind::Embeddings, || {
        (None, None)
    });
    let work = dispatch(Arc::clone(&gateway), candidates, inputs, recording.clone());
    let (candidate, vectors, tries, cost) = gateway.detached(recording.as_ref(), work).await?;
    Ok(respond(&candidate, vectors, format, tries, cost))
}

/// Embeds with the first candidate that can within the request's total
/// deadline, and records the usage (or the failure).
async fn dispatch(
    gateway: Arc<Gateway>,
    candidates: Vec<Candidate>,
    inputs: Inputs,
    recording: Option<Arc<Recording>>,
) -> Result<(Candidate, Vectors, usize, Money), GatewayError> {
    let mut attempts = Vec::new();
    let deadline = gateway.config.total_timeout();
    let outcome = tokio::time::timeout(
        deadline,
        attempt_all(&gateway, &candidates, &inputs, &mut attempts),
    )
    .await;
    let result = match outcome {
        Ok(result) => result,
        Err(_) => {
            let spent: u64 = attempts.iter().map(|a| a.latency_ms).sum();
            if let Some(c) = candidates.get(attempts.len()) {
                attempts.push(Attempt {
                    provider: c.model.provider.to_string(),
                    model: c.model.id.clone(),
                    status: None,
                    error: format!("total deadline of {} ms expired", deadline.as_millis()),
                    latency_ms: (deadline.as_millis() as u64).saturating_sub(spent),
                    skipped: false,
                });
            }
            Err(GatewayError::AllCandidatesFailed {
                attempts: std::mem::take(&mut attempts),
                retry_after_s: None,
            })
        }
    };
    let (candidate, vectors) = match result {
        Ok(found) => found,
        Err(error) => {
            if let Some(recording) = &recording {
                recording.fail(error.attempts());
            }
            return Err(error);
        }
    };
    let tries = attempts.iter().filter(|a| !a.skipped).count() + 1;
    let model = candidate.model.as_ref();
    let cost = model.cost(vectors.input_tokens);
    if let Some(recording) = &recording {
        recording.record(Served {
            model: &model.id,
            provider: model.provider.as_str(),
            free: false,
            tokens: Tokens {
                input: vectors.input_tokens,
                ..Default::default()
            },
            cost,
            attempts: &attempts,
            outcome: Outcome::Completed,
            first_byte: None,
        });
    }
    Ok((candidate, vectors, tries, cost))
}

/// `prefer`, `quality` when absent: a static order, so an alias keeps
/// answering from the same model while it is healthy, whatever the batch
/// size or the latency of the moment (vectors of two models do not compare).
fn prefer_of(request: &EmbeddingRequest) -> Result<Prefer, GatewayError> {
    match request.prefer.as_deref() {
        None => Ok(Prefer::Quality),
        Some(p) => p
            .parse()
            .map_err(|message: String| GatewayError::invalid(message, Some("prefer".to_owned()))),
    }
}

/// Checks the input and counts its tokens.
fn inputs(
    gateway: &Gateway,
    input: EmbeddingInput,
    dimensions: Option<u32>,
    user: Option<String>,
) -> Result<Inputs, GatewayError> {
    let bad = |message: String| GatewayError::invalid(message, Some("input".to_owned()));
    let items: Vec<EmbedInput> = match input {
        EmbeddingInput::Text(text) => vec![EmbedInput::Text(text)],
        EmbeddingInput::Texts(texts) => texts.into_iter().map(EmbedInput::Text).collect(),
        EmbeddingInput::Tokens(ids) => vec![EmbedInput::Tokens(ids)],
        EmbeddingInput::TokenLists(lists) => lists.into_iter().map(EmbedInput::Tokens).collect(),
    };
    if items.is_empty() {
        return Err(bad("`input` must contain at least one item.".into()));
    }
    let max = gateway.config.embeddings.max_inputs;
    if items.len() > max {
        return Err(bad(format!(
            "`input` has {} items; at most {max} are accepted per request.",
            items.len()
        )));
    }
    let empty = |i: &EmbedInput| match i {
        EmbedInput::Text(t) => t.is_empty(),
        EmbedInput::Tokens(ids) => ids.is_empty(),
    };
    if let Some(i) = items.iter().position(empty) {
        return Err(bad(format!(
            "`input` item {i} is empty; every input needs content."
        )));
    }
    if dimensions == Some(0) {
        return Err(GatewayError::invalid(
            "`dimensions` must be at least 1.",
            Some("dimensions".to_owned()),
        ));
    }
    let tokens = items
        .iter()
        .map(|i| match i {
            EmbedInput::Text(t) => gateway.tokens.count_text(t),
            EmbedInput::Tokens(ids) => ids.len() as u64,
        })
        .collect();
    Ok(Inputs {
        items,
        tokens,
        dimensions,
        user,
    })
}

/// Tries each candidate in order until one embeds every input.
async fn attempt_all(
    gateway: &Arc<Gateway>,
    candidates: &[Candidate],
    inputs: &Inputs,
    attempts: &mut Vec<Attempt>,
) -> Result<(Candidate, Vectors), GatewayError> {
    let mut soonest = Soonest::default();
    for candidate in candidates {
        let model = candidate.model.as_ref();
        let Some(provider) = gateway.providers.get(model.provider) else {
            continue;
        };
        let started = std::time::Instant::now();
        match embeddings::embed_all(gateway, provider.as_ref(), candidate, inputs).await {
            Ok(vectors) => return Ok((candidate.clone(), vectors)),
            Err(Failure::Skipped(skip)) => {
                soonest.note(skip.retry_in);
                attempts.push(Attempt::skipped(model, skip));
            }
            Err(Failure::Failed(error)) => {
                tracing::warn!(provider = %model.provider, model = %model.id, %error, "embedding attempt failed");
                if !error.retryable() {
                    attempts.push(Attempt::failed(model, &error, started.elapsed()));
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
                attempts.push(Attempt::failed(model, &error, started.elapsed()));
            }
        }
    }
    Err(GatewayError::AllCandidatesFailed {
        attempts: std::mem::take(attempts),
        retry_after_s: soonest.seconds(),
    })
}

fn respond(
    candidate: &Candidate,
    vectors: Vectors,
    format: EncodingFormat,
    tries: usize,
    cost: Money,
) -> Response {
    let model = candidate.model.as_ref();
    let data = vectors
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Embedding {
            object: "embedding".into(),
            index,
            embedding: match format {
                EncodingFormat::Float => EmbeddingVector::Float(v),
                EncodingFormat::Base64 => EmbeddingVector::Base64(vector::to_base64(&v)),
            },
        })
        .collect();
    let mut response = Json(EmbeddingResponse {
        object: "list".into(),
        data,
        model: model.id.clone(),
        usage: EmbeddingUsage {
            prompt_tokens: vectors.input_tokens,
            total_tokens: vectors.input_tokens,
            cost: Some(cost.to_string()),
        },
    })
    .into_response();
    super::routing_headers(&mut response, model, tries, Some(cost));
    response
}
