//! `model: "auto"`: read the conversation ([`signals`], [`features`]), score
//! it 0–100 with two learned linear questions ([`model`], fitted offline by
//! [`train`]) and map the score to a tier ([`score`]); `prefer` then orders
//! the tier's models as usual. The decision is explainable: each feature's
//! share of the score is kept, sent back on `POST /v1/router/explain` and
//! summarised in the `X-Model-Router-Auto-Tier` / `-Auto-Score` headers.
//! [`eval`] measures it on conversations it was not fitted on.

pub mod eval;
pub mod features;
pub mod instruction;
pub mod lexicon;
pub mod model;
pub mod score;
pub mod signals;
pub mod train;

use openai::ChatRequest;

pub use model::{Model, ModelError, ModelHandle};
pub use score::{AutoConfig, Contribution, Explanation, Question};

/// The model name that asks for automatic routing.
pub const AUTO: &str = "auto";

/// Scores `request` with `model` and explains the tier it gets.
pub fn decide(request: &ChatRequest, model: &Model, config: &AutoConfig) -> Explanation {
    model.explain(&features::read(request), config)
}
