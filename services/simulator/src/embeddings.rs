//! Embedding endpoints in three dialects: OpenAI `POST /openai/v1/embeddings`,
//! Gemini `:embedContent` / `:batchEmbedContents` and Titan V2 through
//! Bedrock's InvokeModel, with each API's documented limits.
//!
//! Vectors are deterministic: a model's full-size vector for an input is
//! drawn from a generator seeded by a hash of the model id and the input, so
//! the same text always gets the same vector (similar texts do not get
//! similar ones). A smaller native size is the full vector cut down, then
//! renormalised to unit length, except for Gemini, which (as documented)
//! normalises only its full 3,072-dimension output.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use catalog::{EmbeddingModel, ProviderId};
use openai::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage,
    EmbeddingVector, EncodingFormat,
};

use crate::faults::Fault;
use crate::{bedrock_converse, google_gemini, openai_chat, Simulator};

/// Titan V2 refuses texts longer than this many characters.
const TITAN_MAX_CHARS: usize = 50_000;

/// A unit vector of `dims` values for `input`, cut from the model's full size.
fn vector(model: &EmbeddingModel, input: &[u8], dims: u32, normalise: bool) -> Vec<f32> {
    let mut state = model
        .id
        .bytes()
        .chain([0xff])
        .chain(input.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let full: Vec<f64> = (0..model.dimensions)
        .map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let unit = |values: &[f64]| -> Vec<f32> {
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        values.iter().map(|v| (v / norm) as f32).collect()
    };
    let full = unit(&full);
    let cut: Vec<f64> = full[..dims as usize]
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    if normalise {
        unit(&cut)
    } else {
        cut.into_iter().map(|v| v as f32).collect()
    }
}

fn token_bytes(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

/// The catalog entry of the embedding model `provider` serves as `model`.
fn lookup(sim: &Simulator, provider: ProviderId, model: &str) -> Option<Arc<EmbeddingModel>> {
    let catalog = sim.catalog.snapshot();
    let found = catalog
        .embedding_models()
        .iter()
        .find(|m| m.provider == provider && m.provider_model_id == model);
    found.cloned()
}

/// The fault for this call, after sleeping its latency.
async fn fault(
    sim: &Simulator,
    headers: &HeaderMap,
    provider: ProviderId,
    model: &str,
) -> Result<Fault, String> {
    let fault = sim
        .faults
        .take(headers, provider, model)?
        .unwrap_or_default();
    if let Some(ms) = fault.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(fault)
}

fn openai_invalid(message: impl Into<String>, param: Option<&str>) -> Response {
    openai_chat::error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        param,
        None,
    )
}

/// `POST /openai/v1/embeddings`.
pub(crate) async fn openai(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !openai_chat::authorized(&sim, &headers) {
        return openai_chat::invalid_key();
    }
    sim.recorder.record(ProviderId::Openai, &body);
    let request: EmbeddingRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return openai_invalid(
                format!("We could not parse the JSON body of your request: {e}"),
                None,
            )
        }
    };
    let Some(model) = lookup(&sim, ProviderId::Openai, &request.model) else {
        return openai_chat::error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                request.model
            ),
            None,
            Some("model_not_found"),
        );
    };
    let inputs: Vec<(Vec<u8>, u64)> = match &request.input {
        EmbeddingInput::Text(t) => vec![(t.as_bytes().to_vec(), sim.tokens.count_text(t))],
        EmbeddingInput::Texts(ts) => ts
            .iter()
            .map(|t| (t.as_bytes().to_vec(), sim.tokens.count_text(t)))
            .collect(),
        EmbeddingInput::Tokens(ids) => vec![(token_bytes(ids), ids.len() as u64)],
        EmbeddingInput::TokenLists(lists) => lists
            .iter()
            .map(|ids| (token_bytes(ids), ids.len() as u64))
            .collect(),
    };
    if let Some(rejection) = openai_limits(&model, &request, &inputs) {
        return rejection;
    }
    let fault = match fault(&sim, &headers, ProviderId::Openai, &request.model).await {
        Ok(f) => f,
        Err(message) => return openai_invalid(message, None),
    };
    if let Some(response) = fault.error(openai_chat::injected_error) {
        return response;
    }
    let dims = request.dimensions.unwrap_or(model.dimensions);
    let format = request.encoding_format.unwrap_or_default();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, (input, _))| Embedding {
            object: "embedding".into(),
            index,
            embedding: encode(vector(&model, input, dims, true), format),
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    Json(EmbeddingResponse {
        object: "list".into(),
        data,
        model: model.provider_model_id.clone(),
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            cost: None,
        },
    })
    .into_response()
}

/// What OpenAI refuses: empty input, too many inputs or tokens, bad dimensions.
fn openai_limits(
    model: &EmbeddingModel,
    request: &EmbeddingRequest,
    inputs: &[(Vec<u8>, u64)],
) -> Option<Response> {
    if inputs.is_empty() || inputs.iter().any(|(bytes, _)| bytes.is_empty()) {
        return Some(openai_invalid(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            Some("input"),
        ));
    }
    if inputs.len() > model.batch.max_inputs as usize {
        return Some(openai_invalid(
            format!(
                "'$.input' is invalid: at most {} inputs are allowed per request, got {}.",
                model.batch.max_inputs,
                inputs.len()
            ),
            Some("input"),
        ));
    }
    if let Some((_, longest)) = inputs
        .iter()
        .find(|(_, t)| *t > u64::from(model.max_input_tokens))
    {
        return Some(openai_invalid(
            format!("This model's maximum context length is {} tokens, however you requested {longest} tokens. Please reduce your prompt.", model.max_input_tokens),
            Some("input"),
        ));
    }
    let total: u64 = inputs.iter().map(|(_, t)| t).sum();
    if let Some(max) = model.batch.max_tokens.filter(|&m| total > u64::from(m)) {
        return Some(openai_invalid(
            format!("Requested {total} tokens, max {max} tokens per request"),
            Some("input"),
        ));
    }
    if request
        .dimensions
        .is_some_and(|d| d == 0 || d > model.dimensions)
    {
        return Some(openai_invalid(
            format!(
                "This model supports dimensions between 1 and {}.",
                model.dimensions
            ),
            Some("dimensions"),
        ));
    }
    None
}

fn encode(vector: Vec<f32>, format: EncodingFormat) -> EmbeddingVector {
    match format {
        EncodingFormat::Float => EmbeddingVector::Float(vector),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// `models/{model}:embedContent` and `:batchEmbedContents`.
pub(crate) async fn gemini(
    sim: &Simulator,
    model_id: &str,
    batch: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    sim.recorder.record(ProviderId::Google, body);
    let requests = if batch {
        serde_json::from_slice::<gemini::BatchEmbedContentsRequest>(body).map(|b| b.requests)
    } else {
        serde_json::from_slice::<gemini::EmbedContentRequest>(body).map(|r| vec![r])
    };
    let requests = match requests {
        Ok(r) => r,
        Err(e) => return google_gemini::error(400, format!("Invalid JSON payload received. {e}")),
    };
    let Some(model) = lookup(sim, ProviderId::Google, model_id) else {
        return google_gemini::error(404, format!("models/{model_id} is not found for API version v1beta, or is not supported for embedContent."));
    };
    if requests.len() > model.batch.max_inputs as usize {
        return google_gemini::error(
            400,
            format!(
                "* BatchEmbedContentsRequest.requests: at most {} requests can be in one batch",
                model.batch.max_inputs
            ),
        );
    }
    let mut vectors = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        if batch && request.model != format!("models/{model_id}") {
            return google_gemini::error(400, format!("* BatchEmbedContentsRequest.requests[{i}].model: the model of each request must match the model of the batch (models/{model_id})"));
        }
        let text: String = request
            .content
            .parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect();
        if text.is_empty() {
            return google_gemini::error(
                400,
                "* EmbedContentRequest.content: contents must not be empty",
            );
        }
        let dims = request.output_dimensionality.unwrap_or(model.dimensions);
        if dims == 0 || dims > model.dimensions {
            return google_gemini::error(
                400,
                format!(
                    "* EmbedContentRequest.output_dimensionality: must be between 1 and {}",
                    model.dimensions
                ),
            );
        }
        vectors.push(vector(
            &model,
            text.as_bytes(),
            dims,
            dims == model.dimensions,
        ));
    }
    let fault = match fault(sim, headers, ProviderId::Google, model_id).await {
        Ok(f) => f,
        Err(message) => return google_gemini::error(400, message),
    };
    if let Some(response) = fault.error(google_gemini::injected_error) {
        return response;
    }
    let mut embeddings: Vec<gemini::ContentEmbedding> = vectors
        .into_iter()
        .map(|values| gemini::ContentEmbedding { values })
        .collect();
    if batch {
        Json(gemini::BatchEmbedContentsResponse { embeddings }).into_response()
    } else {
        Json(gemini::EmbedContentResponse {
            embedding: embeddings.pop().unwrap_or_default(),
        })
        .into_response()
    }
}

/// Titan V2 through `POST /bedrock/model/{model}/invoke` (already authenticated).
pub(crate) async fn titan(
    sim: &Simulator,
    model_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    sim.recorder.record(ProviderId::Bedrock, body);
    let Some(model) = lookup(sim, ProviderId::Bedrock, model_id) else {
        return bedrock_converse::error(400, "The provided model identifier is invalid.");
    };
    let request: bedrock::TitanEmbedRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return bedrock_converse::error(
                400,
                format!("Malformed input request: {e}, please reformat your input and try again."),
            )
        }
    };
    if request.input_text.is_empty() || request.input_text.chars().count() > TITAN_MAX_CHARS {
        return bedrock_converse::error(400, format!("Malformed input request: expected minLength: 1, maxLength: {TITAN_MAX_CHARS}, please reformat your input and try again."));
    }
    let dims = request.dimensions.unwrap_or(model.dimensions);
    if !bedrock::TITAN_DIMENSIONS.contains(&dims) || dims > model.dimensions {
        return bedrock_converse::error(400, "Malformed input request: #/dimensions: 1 schema violations found, please reformat your input and try again.");
    }
    let tokens = sim.tokens.count_text(&request.input_text);
    if tokens > u64::from(model.max_input_tokens) {
        return bedrock_converse::error(
            400,
            format!(
                "400 Bad Request: Too many input tokens. Max input tokens: {}, request input token count: {tokens}",
                model.max_input_tokens
            ),
        );
    }
    let fault = match fault(sim, headers, ProviderId::Bedrock, model_id).await {
        Ok(f) => f,
        Err(message) => return bedrock_converse::error(400, message),
    };
    if let Some(response) = fault.error(bedrock_converse::injected_error) {
        return response;
    }
    let embedding = vector(
        &model,
        request.input_text.as_bytes(),
        dims,
        request.normalize.unwrap_or(true),
    );
    let binary = request
        .embedding_types
        .as_ref()
        .is_some_and(|types| types.iter().any(|t| t == "binary"))
        .then(|| embedding.iter().map(|&v| u8::from(v > 0.0)).collect());
    Json(bedrock::TitanEmbedResponse {
        embeddings_by_type: bedrock::EmbeddingsByType {
            float: Some(embedding.clone()),
            binary,
            extra: Default::default(),
        },
        embedding,
        input_text_token_count: tokens,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_nested() {
        let catalog = catalog::Catalog::builtin();
        let model = catalog.embedding_model("text-embedding-3-small").unwrap();
        let a = vector(model, b"hello", 1536, true);
        assert_eq!(a, vector(model, b"hello", 1536, true));
        assert_ne!(a, vector(model, b"hello!", 1536, true));
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        // A native smaller size points the same way as the full vector's head.
        let small = vector(model, b"hello", 8, true);
        let head_norm: f32 = a[..8].iter().map(|v| v * v).sum::<f32>().sqrt();
        for (s, h) in small.iter().zip(&a[..8]) {
            assert!((s - h / head_norm).abs() < 1e-6);
        }
    }
}
