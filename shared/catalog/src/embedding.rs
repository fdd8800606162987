//! Embedding models and the aliases clients reach them by.
//!
//! Embedding models are a catalog section of their own: they have no tier,
//! no output and no chat capabilities, but a vector size, the sizes they can
//! produce natively and the batch limits of their provider's API.

use std::fmt;

use money::{CostBuilder, Money, PricePerMTok};
use serde::{Deserialize, Serialize};

use crate::model::ProviderId;

/// The names clients use instead of a concrete embedding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EmbeddingAlias {
    /// A small, cheap general-purpose model.
    #[serde(rename = "embed-small")]
    Small,
    /// A large, higher-quality model.
    #[serde(rename = "embed-large")]
    Large,
    /// Amazon Titan Text Embeddings on Bedrock.
    #[serde(rename = "embed-titan")]
    Titan,
}

impl EmbeddingAlias {
    /// Every alias.
    pub const ALL: [EmbeddingAlias; 3] = [
        EmbeddingAlias::Small,
        EmbeddingAlias::Large,
        EmbeddingAlias::Titan,
    ];

    /// The name used for `model`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EmbeddingAlias::Small => "embed-small",
            EmbeddingAlias::Large => "embed-large",
            EmbeddingAlias::Titan => "embed-titan",
        }
    }

    /// Parses an alias as given in a request's `model` field.
    pub fn parse(name: &str) -> Option<EmbeddingAlias> {
        EmbeddingAlias::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for EmbeddingAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The vector sizes a model can produce itself, below its default size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NativeDimensions {
    /// Any size from `min` up to the default (OpenAI v3, Gemini `outputDimensionality`).
    From { min: u32 },
    /// Only these sizes (Titan v2: 256, 512, 1024), ascending.
    OneOf(Vec<u32>),
    /// Only the default size.
    DefaultOnly,
}

/// How one request for `wanted` dimensions is served by a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimensionPlan {
    /// The size to ask the provider for (`None`: its default, not sent).
    pub ask: Option<u32>,
    /// The size the client gets: vectors longer than this are truncated and
    /// L2-renormalised by the gateway.
    pub keep: u32,
}

/// The provider's limits for one embedding call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchLimits {
    /// Inputs per call (1 for Titan's InvokeModel).
    pub max_inputs: u32,
    /// Tokens of all inputs of one call together, if the API limits them.
    pub max_tokens: Option<u32>,
}

/// One embedding model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingModel {
    /// The id clients pin (`text-embedding-3-small`).
    pub id: String,
    /// Who serves it.
    pub provider: ProviderId,
    /// The id the provider's API expects.
    pub provider_model_id: String,
    /// The aliases that may route to it.
    pub aliases: Vec<EmbeddingAlias>,
    /// The vector size when the client asks for none.
    pub dimensions: u32,
    /// The smaller sizes it produces natively.
    pub native_dimensions: NativeDimensions,
    /// Tokens one input may have.
    pub max_input_tokens: u32,
    /// Limits of one API call.
    pub batch: BatchLimits,
    /// Price of input tokens (embeddings have no output).
    pub input_per_mtok: PricePerMTok,
    /// Retrieval quality score, 0-100 (MTEB average, approximate).
    pub quality: u8,
    /// How `quality` was obtained when not published for this model.
    pub scores_note: Option<String>,
    /// Latency seed: the median milliseconds of one call.
    pub ttft_ms: u32,
}

impl EmbeddingModel {
    /// What embedding `input_tokens` costs, rounded up once to a nano-dollar.
    pub fn cost(&self, input_tokens: u64) -> Money {
        CostBuilder::default()
            .add(input_tokens, self.input_per_mtok)
            .total()
    }

    /// How to produce `wanted` dimensions (the default when `None`), or
    /// `Err` with the model's largest size when it cannot.
    pub fn dimension_plan(&self, wanted: Option<u32>) -> Result<DimensionPlan, u32> {
        let Some(wanted) = wanted else {
            return Ok(DimensionPlan {
                ask: None,
                keep: self.dimensions,
            });
        };
        if wanted > self.dimensions || wanted == 0 {
            return Err(self.dimensions);
        }
        let ask = match &self.native_dimensions {
            NativeDimensions::From { min } if wanted >= *min => Some(wanted),
            NativeDimensions::From { .. } | NativeDimensions::DefaultOnly => None,
            NativeDimensions::OneOf(sizes) => sizes.iter().copied().find(|&s| s >= wanted),
        };
        Ok(DimensionPlan { ask, keep: wanted })
    }

    /// Whether `alias` may route here.
    pub fn serves(&self, alias: EmbeddingAlias) -> bool {
        self.aliases.contains(&alias)
    }
}

#[cfg(test)]
mod tests {
    use crate::Catalog;

    #[test]
    fn dimension_plans_prefer_native_sizes_and_refuse_larger_ones() {
        let catalog = Catalog::builtin();
        let small = catalog.embedding_model("text-embedding-3-small").unwrap();
        let plan = small.dimension_plan(Some(256)).unwrap();
        assert_eq!((plan.ask, plan.keep), (Some(256), 256));
        assert_eq!(small.dimension_plan(Some(1537)), Err(1536));
        assert_eq!(small.dimension_plan(Some(0)), Err(1536));
        assert_eq!(small.dimension_plan(None).unwrap().keep, 1536);

        let titan = catalog.embedding_model("titan-embed-text-v2").unwrap();
        let exact = titan.dimension_plan(Some(512)).unwrap();
        assert_eq!((exact.ask, exact.keep), (Some(512), 512));
        // 300 is not a Titan size: ask for the next one up, then truncate.
        let between = titan.dimension_plan(Some(300)).unwrap();
        assert_eq!((between.ask, between.keep), (Some(512), 300));

        let gemini = catalog.embedding_model("gemini-embedding-001").unwrap();
        // Below Gemini's smallest native size: the default is cut down.
        let tiny = gemini.dimension_plan(Some(64)).unwrap();
        assert_eq!((tiny.ask, tiny.keep), (None, 64));
    }

    #[test]
    fn every_alias_has_a_model_and_costs_are_input_only() {
        let catalog = Catalog::builtin();
        for alias in super::EmbeddingAlias::ALL {
            assert!(
                catalog.embedding_models().iter().any(|m| m.serves(alias)),
                "{alias} has no model"
            );
        }
        let large = catalog.embedding_model("text-embedding-3-large").unwrap();
        // 1,000,000 tokens at $0.13 per million.
        assert_eq!(large.cost(1_000_000).to_string(), "0.13");
        assert_eq!(large.cost(1).nanos(), 130);
    }
}
