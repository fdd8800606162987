//! Cerebras (`https://api.cerebras.ai/v1`, `CEREBRAS_API_KEY`).
//!
//! Deviations: `n` must be 1; responses add `time_info` (passed through).

use super::Dialect;
use catalog::ProviderId;

/// The Cerebras dialect.
pub const DIALECT: Dialect = Dialect {
    provider: ProviderId::Cerebras,
    reasoning_uses_max_completion_tokens: false,
    reasoning_refuses: &[],
    single_choice: true,
};
