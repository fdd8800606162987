//! The Anthropic Messages API (`POST /v1/messages`, version `2023-06-01`) as
//! serde types: what the gateway's adapter sends and reads, and what the
//! simulator accepts and answers. Fields this project does not use are kept
//! in `extra` maps so nothing a client or the API sends is dropped.
//!
//! Reference: <https://docs.anthropic.com/en/api/messages> and
//! <https://docs.anthropic.com/en/docs/build-with-claude/streaming>.

mod messages;
mod stream;

pub use messages::*;
pub use stream::*;

/// Fields passed through untouched.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// The API version this project speaks, sent as `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";
