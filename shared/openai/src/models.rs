//! `GET /v1/models` shapes.

use serde::{Deserialize, Serialize};

/// `{"object": "list", "data": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelObject>,
}

/// One model entry; Model Router adds its routing metadata in `extra`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelObject {
    /// The id to put in `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Who serves it.
    pub owned_by: String,
    /// Extra metadata.
    #[serde(flatten)]
    pub extra: crate::Extra,
}
