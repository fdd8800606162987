//! Titan Text Embeddings V2 through InvokeModel (`/model/{id}/invoke`):
//! `{inputText, dimensions, normalize}` in, `{embedding, inputTextTokenCount}`
//! out, one text per call. Vectors are asked for normalised, as OpenAI's are.

use catalog::EmbeddingModel;

use crate::providers::translate::embed_text;
use crate::providers::{EmbedInput, Unsupported};

/// The InvokeModel body for one input.
pub fn request(
    model: &EmbeddingModel,
    input: &EmbedInput,
    dimensions: Option<u32>,
) -> Result<bedrock::TitanEmbedRequest, Unsupported> {
    Ok(bedrock::TitanEmbedRequest {
        input_text: embed_text(model, input)?.to_owned(),
        dimensions,
        normalize: Some(true),
        embedding_types: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_titans_shape() {
        let catalog = catalog::Catalog::builtin();
        let model = catalog.embedding_model("titan-embed-text-v2").unwrap();
        let body = request(model, &EmbedInput::Text("hi".into()), Some(256)).unwrap();
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({"inputText": "hi", "dimensions": 256, "normalize": true})
        );
        assert!(request(model, &EmbedInput::Tokens(vec![1]), None).is_err());
    }
}
