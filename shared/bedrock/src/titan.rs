//! Amazon Titan Text Embeddings V2 through InvokeModel
//! (`POST /model/amazon.titan-embed-text-v2:0/invoke`): one text per call.
//!
//! Reference: <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>.

use serde::{Deserialize, Serialize};

use crate::Extra;

/// The sizes Titan V2 produces.
pub const TITAN_DIMENSIONS: [u32; 3] = [256, 512, 1024];

/// The InvokeModel body for Titan V2.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TitanEmbedRequest {
    /// The text (up to 8,192 tokens or 50,000 characters).
    pub input_text: String,
    /// 1024 (default), 512 or 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Unit length (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    /// `float` and/or `binary` (default float).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_types: Option<Vec<String>>,
}

/// Titan V2's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TitanEmbedResponse {
    /// The vector (always floats).
    pub embedding: Vec<f32>,
    /// Tokens of the input, as billed.
    pub input_text_token_count: u64,
    /// The vectors per requested type.
    #[serde(default)]
    pub embeddings_by_type: EmbeddingsByType,
}

/// Titan's `embeddingsByType`: the vector in each type asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsByType {
    /// Floats (always present, as on the real service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float: Option<Vec<f32>>,
    /// One bit per dimension, as 0/1 integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<Vec<u8>>,
    /// Types not modelled here.
    #[serde(flatten)]
    pub extra: Extra,
}
