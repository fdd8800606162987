//! Groq (`https://api.groq.com/openai/v1`, `GROQ_API_KEY`).
//!
//! Deviations: `n` must be 1; responses add an `x_groq` object (passed through)
//! and streams may carry usage there as well as in the standard usage chunk.

use super::Dialect;
use catalog::ProviderId;

/// The Groq dialect.
pub const DIALECT: Dialect = Dialect {
    provider: ProviderId::Groq,
    reasoning_uses_max_completion_tokens: false,
    reasoning_refuses: &[],
    single_choice: true,
};
