//! `model: "auto"`: read the whole conversation ([`signals`]), score it
//! 0–100 and map the score to a tier ([`score`]); `prefer` then orders the
//! tier's models as usual. The decision is explainable: every signal's
//! contribution is kept, sent back on `POST /v1/router/explain` and
//! summarised in the `X-Model-Router-Auto-Tier` / `-Auto-Score` headers.

pub mod eval;
pub mod score;
pub mod signals;

use openai::ChatRequest;

pub use score::{AutoConfig, Contribution, Explanation};

/// The model name that asks for automatic routing.
pub const AUTO: &str = "auto";

/// Scores `request` and explains the tier it gets.
pub fn decide(request: &ChatRequest, config: &AutoConfig) -> Explanation {
    score::explain(&signals::read(request), config)
}
