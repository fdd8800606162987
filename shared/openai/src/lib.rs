//! OpenAI Chat Completions and Embeddings wire types.
//!
//! These are Model Router's public API and the wire format of the OpenAI
//! dialect providers (OpenAI, xAI, Groq, Cerebras). Every struct keeps the
//! fields it does not model in `extra`, so requests and responses pass
//! through the router without losing anything a newer client or provider adds.

mod chat;
mod embeddings;
mod error;
mod models;

pub use chat::*;
pub use embeddings::*;
pub use error::{ErrorBody, ErrorObject};
pub use models::{ModelList, ModelObject};

/// A JSON object of fields this crate does not model, kept for pass-through.
pub type Extra = serde_json::Map<String, serde_json::Value>;
