//! OpenAI (`https://api.openai.com/v1`, `OPENAI_API_KEY`).
//!
//! Deviation: reasoning models (o-series, gpt-5) reject `max_tokens` — the
//! adapter sends it as `max_completion_tokens` — and accept no `temperature`
//! or `top_p` other than 1, so such requests are refused (or routed elsewhere).

use super::Dialect;
use catalog::ProviderId;

/// The OpenAI dialect.
pub const DIALECT: Dialect = Dialect {
    provider: ProviderId::Openai,
    reasoning_uses_max_completion_tokens: true,
    reasoning_refuses: &[
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
    ],
    single_choice: false,
};
