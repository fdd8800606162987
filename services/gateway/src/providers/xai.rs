//! xAI Grok (`https://api.x.ai/v1`, `XAI_API_KEY`).
//!
//! Deviation: reasoning models (grok-3-mini) reject `presence_penalty`,
//! `frequency_penalty` and `stop`; the adapter refuses those for them.

use super::Dialect;
use catalog::ProviderId;

/// The xAI dialect.
pub const DIALECT: Dialect = Dialect {
    provider: ProviderId::Xai,
    reasoning_uses_max_completion_tokens: false,
    reasoning_refuses: &["presence_penalty", "frequency_penalty", "stop"],
    single_choice: false,
};
