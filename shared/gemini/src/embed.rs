//! `models/{model}:embedContent` and `:batchEmbedContents`.
//!
//! Reference: <https://ai.google.dev/api/embeddings>.

use serde::{Deserialize, Serialize};

use crate::{Content, Extra};

/// One text to embed (also an item of a batch).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedContentRequest {
    /// `models/{model}`; in a batch it must name the model of the URL.
    pub model: String,
    /// The text, as parts.
    pub content: Content,
    /// `RETRIEVAL_QUERY`, `SEMANTIC_SIMILARITY`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// Truncate the vector to this size (the model does it natively).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<u32>,
    /// Fields not modelled here.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `:batchEmbedContents` request body: up to 100 requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchEmbedContentsRequest {
    pub requests: Vec<EmbedContentRequest>,
}

/// One vector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentEmbedding {
    pub values: Vec<f32>,
}

/// `:embedContent` response body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedContentResponse {
    pub embedding: ContentEmbedding,
}

/// `:batchEmbedContents` response body: vectors in request order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchEmbedContentsResponse {
    pub embeddings: Vec<ContentEmbedding>,
}
