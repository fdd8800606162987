//! The model catalog: which providers and models exist, their tiers, prices,
//! context windows, capabilities and scores, and the embedding models behind
//! the `embed-*` aliases.
//!
//! The catalog is data, not code: `models.toml` ships with the project and a
//! deployment may point `MODELROUTER_CATALOG` at its own file. A
//! [`CatalogHandle`] serves immutable snapshots and swaps in a new one when
//! the file changes or on SIGHUP, so in-flight requests keep the snapshot
//! they started with.

mod embedding;
mod handle;
mod load;
mod model;
mod provider;

pub use embedding::{BatchLimits, DimensionPlan, EmbeddingAlias, EmbeddingModel, NativeDimensions};
pub use handle::{watch, CatalogHandle};
pub use load::CatalogError;
pub use model::{
    Capabilities, Catalog, LatencySeed, Model, Pricing, PricingRates, ProviderId, ProviderInfo,
    Tier, TokenUsage,
};
pub use provider::{ProviderSpec, Wire};

/// The catalog shipped with this build.
pub const BUILTIN_TOML: &str = include_str!("../models.toml");
