//! `POST /v1/embeddings`: parse, route, embed every input with one model,
//! answer in OpenAI's shape with routing headers and the cost.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openai::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage,
    EmbeddingVector, EncodingFormat,
};

use super::Received;
use crate::dispatch::failover;
use crate::embeddings::{self, vector, Candidate, Inputs, Vectors};
use crate::error::GatewayError;
use crate::prefer::Prefer;
use crate::providers::{EmbedInput, Provider};
use crate::usage::{Recording, Served};
use crate::{routing, Gateway, RequestId};
use events::{Outcome, RequestKind, Tokens};
use money::Money;

/// The handler.
pub async fn create(
    State(gateway): State<Arc<Gateway>>,
    request_id: RequestId,
    Received {
        caller,
        allowance,
        tags,
        request,
    }: Received<EmbeddingRequest>,
) -> Result<Response, GatewayError> {
    let prefer = prefer_of(&request)?;
    crate::key_limits::check_allowed(&caller.limits, &[request.model.as_str()])?;
    let attribution = crate::attribution::of_embeddings(tags, request.user.as_deref())?;
    let format = request.encoding_format.unwrap_or_default();
    let inputs = inputs(&gateway, request.input, request.dimensions, request.user)?;
    let catalog = gateway.catalog.snapshot();
    let candidates = embeddings::plan(
        &gateway,
        &catalog,
        &request.model,
        &inputs,
        prefer,
        routing::Access {
            caller: &caller,
            allowance,
        },
    )?;
    let kind = RequestKind::Embeddings;
    let recording = gateway.recording(&caller, &request_id, kind, attribution, || {
        (None, None, None)
    });
    let work = dispatch(Arc::clone(&gateway), candidates, inputs, recording.clone());
    let (candidate, vectors, tries, cost) = gateway.detached(recording.as_ref(), work).await?;
    Ok(respond(&candidate, vectors, format, tries, cost))
}

/// Embeds with the first candidate that can within the request's total
/// deadline (the shared failover loop), and records the usage (or the failure).
async fn dispatch(
    gateway: Arc<Gateway>,
    candidates: Vec<Candidate>,
    inputs: Inputs,
    recording: Option<Arc<Recording>>,
) -> Result<(Candidate, Vectors, usize, Money), GatewayError> {
    let calls = EmbedAttempts {
        gateway: Arc::clone(&gateway),
        inputs,
    };
    let result = failover::run(&gateway, &candidates, &calls).await;
    let won = match result {
        Ok(won) => won,
        Err(error) => {
            if let Some(recording) = &recording {
                recording.fail(error.attempts());
            }
            return Err(error);
        }
    };
    let tries = won.tries();
    let model = won.target.model.as_ref();
    let vectors = won.value;
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
            attempts: &won.attempts,
            outcome: Outcome::Completed,
            finish_reasons: Vec::new(),
            output: None,
            first_byte: None,
        });
    }
    Ok((won.target.clone(), vectors, tries, cost))
}

/// Embedding calls: every input, with one candidate.
struct EmbedAttempts {
    gateway: Arc<Gateway>,
    inputs: Inputs,
}

impl failover::Attempter<Candidate> for EmbedAttempts {
    type Answer = Vectors;

    async fn attempt(
        &self,
        candidate: &Candidate,
        provider: &dyn Provider,
        _before: &[crate::error::Attempt],
    ) -> Result<Vectors, failover::Failure> {
        embeddings::embed_all(&self.gateway, provider, candidate, &self.inputs).await
    }
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
