//! Response header names.

/// A unique id for every request, on every response (errors included).
pub const REQUEST_ID: &str = "x-request-id";
/// The catalog model that answered.
pub const MODEL: &str = "x-model-router-model";
/// Its provider.
pub const PROVIDER: &str = "x-model-router-provider";
/// The exact USD cost (non-streaming responses; streams put it in the usage chunk).
pub const COST: &str = "x-model-router-cost";
/// How many candidates were tried.
pub const ATTEMPTS: &str = "x-model-router-attempts";
/// The tier `model: "auto"` chose.
pub const AUTO_TIER: &str = "x-model-router-auto-tier";
/// The 0–100 score it chose it by.
pub const AUTO_SCORE: &str = "x-model-router-auto-score";
