//! Embeddings through `models/{model}:batchEmbedContents`: one request per
//! input, each naming the model; `dimensions` → `outputDimensionality`.
//! Gemini reports no token counts for embeddings, so the gateway bills its
//! own count of the texts.

use catalog::EmbeddingModel;
use gemini::{
    BatchEmbedContentsRequest, BatchEmbedContentsResponse, Content, EmbedContentRequest, Part,
};

use crate::providers::translate::embed_text;
use crate::providers::{EmbedCall, Embedded, ProviderError, Unsupported};

/// The batch body for `call`.
pub fn request(
    model: &EmbeddingModel,
    call: &EmbedCall<'_>,
) -> Result<BatchEmbedContentsRequest, Unsupported> {
    let name = format!("models/{}", model.provider_model_id);
    let requests = call
        .inputs
        .iter()
        .map(|input| {
            Ok(EmbedContentRequest {
                model: name.clone(),
                content: Content {
                    role: None,
                    parts: vec![Part {
                        text: Some(embed_text(model, input)?.to_owned()),
                        ..Default::default()
                    }],
                },
                output_dimensionality: call.dimensions,
                ..Default::default()
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(BatchEmbedContentsRequest { requests })
}

/// The vectors of a batch answer, in request order.
pub fn vectors(
    answer: BatchEmbedContentsResponse,
    call: &EmbedCall<'_>,
) -> Result<Embedded, ProviderError> {
    Embedded {
        vectors: answer.embeddings.into_iter().map(|e| e.values).collect(),
        input_tokens: None,
    }
    .expect(call)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::EmbedInput;

    #[test]
    fn batch_names_the_model_in_every_request_and_asks_for_the_size() {
        let catalog = catalog::Catalog::builtin();
        let model = catalog.embedding_model("gemini-embedding-001").unwrap();
        let inputs = [EmbedInput::Text("a".into()), EmbedInput::Text("b".into())];
        let call = EmbedCall {
            inputs: &inputs,
            dimensions: Some(768),
            user: None,
        };
        let body = serde_json::to_value(request(model, &call).unwrap()).unwrap();
        assert_eq!(body["requests"][1]["model"], "models/gemini-embedding-001");
        assert_eq!(body["requests"][1]["content"]["parts"][0]["text"], "b");
        assert_eq!(body["requests"][0]["outputDimensionality"], 768);
        let tokens = [EmbedInput::Tokens(vec![1, 2])];
        let call = EmbedCall {
            inputs: &tokens,
            ..call
        };
        assert_eq!(request(model, &call).unwrap_err().param, "input");
    }
}
