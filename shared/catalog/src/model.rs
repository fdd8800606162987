//! Catalog types. Everything here is immutable once loaded.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use money::{CostBuilder, Money, PricePerMTok};
use serde::{Deserialize, Serialize};

use crate::embedding::{EmbeddingAlias, EmbeddingModel};

/// The seven upstream providers Model Router speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderId {
    Openai,
    Anthropic,
    Google,
    Xai,
    Bedrock,
    Groq,
    Cerebras,
}

impl ProviderId {
    /// Every provider, in a stable order.
    pub const ALL: [ProviderId; 7] = [
        ProviderId::Openai,
        ProviderId::Anthropic,
        ProviderId::Google,
        ProviderId::Xai,
        ProviderId::Bedrock,
        ProviderId::Groq,
        ProviderId::Cerebras,
    ];

    /// The lowercase name used in the catalog, headers and URLs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderId::Openai => "openai",
            ProviderId::Anthropic => "anthropic",
            ProviderId::Google => "google",
            ProviderId::Xai => "xai",
            ProviderId::Bedrock => "bedrock",
            ProviderId::Groq => "groq",
            ProviderId::Cerebras => "cerebras",
        }
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderId::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown provider `{s}`"))
    }
}

/// Capability tiers a client can ask for instead of a concrete model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Economy,
    Standard,
    Premium,
}

impl Tier {
    /// Every tier, cheapest first.
    pub const ALL: [Tier; 3] = [Tier::Economy, Tier::Standard, Tier::Premium];

    /// The tier's name as used for `model`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Economy => "economy",
            Tier::Standard => "standard",
            Tier::Premium => "premium",
        }
    }

    /// Parses a tier name as given in a request's `model` field.
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a model can do beyond plain text chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Function/tool calling.
    pub tools: bool,
    /// Image inputs.
    pub vision: bool,
    /// Server-sent event streaming.
    pub streaming: bool,
    /// `response_format` JSON mode / JSON schema.
    pub json_mode: bool,
}

/// One per-million-token price list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PricingRates {
    /// Uncached input tokens.
    pub input: PricePerMTok,
    /// Output tokens (reasoning tokens included, as providers bill them).
    pub output: PricePerMTok,
    /// Input tokens served from the provider's prompt cache; `input` when absent.
    pub cached_input: Option<PricePerMTok>,
    /// Input tokens written to the prompt cache (Anthropic charges more); `input` when absent.
    pub cache_write: Option<PricePerMTok>,
}

/// A model's prices, with an optional higher rate for long prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pricing {
    /// The standard rates.
    pub base: PricingRates,
    /// Rates for prompts over `above_input_tokens` (e.g. Gemini Pro over 200k).
    pub long_context: Option<(u32, PricingRates)>,
}

/// Token counts of one request, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// All input tokens, cached ones included.
    pub input_tokens: u64,
    /// The part of `input_tokens` read from the prompt cache.
    pub cached_input_tokens: u64,
    /// The part of `input_tokens` written to the prompt cache.
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

/// Catalog seeds for latency-aware routing, before any traffic is observed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySeed {
    /// Median time to first token, in milliseconds.
    pub ttft_ms: u32,
    /// Median output speed.
    pub output_tokens_per_s: u32,
}

/// One routable model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// The id clients use to pin this model (`gpt-4.1`).
    pub id: String,
    /// Who serves it.
    pub provider: ProviderId,
    /// The id the provider's API expects (`us.meta.llama4-scout-17b-instruct-v1:0`).
    pub provider_model_id: String,
    /// The tier it serves.
    pub tier: Tier,
    /// Input plus output tokens the model accepts.
    pub context_window: u32,
    /// The most output tokens one response may have.
    pub max_output_tokens: u32,
    /// List prices.
    pub pricing: Pricing,
    /// General quality score, 0-100.
    pub quality: u8,
    /// Coding score, 0-100.
    pub coding: u8,
    /// How the scores were obtained when not published for this model (`estimate`).
    pub scores_note: Option<String>,
    /// Latency seeds.
    pub latency: LatencySeed,
    /// What it can do.
    pub capabilities: Capabilities,
    /// A reasoning model: takes `max_completion_tokens`, not `max_tokens` or sampling knobs.
    pub reasoning: bool,
    /// Served at zero cost to accounts (Groq and Cerebras).
    pub free: bool,
}

impl Model {
    /// What `usage` costs the account: zero for free models, otherwise list price,
    /// computed exactly and rounded up once to a nano-dollar.
    pub fn cost(&self, usage: &TokenUsage) -> Money {
        if self.free {
            return Money::ZERO;
        }
        let rates = match self.pricing.long_context {
            Some((above, rates)) if usage.input_tokens > u64::from(above) => rates,
            _ => self.pricing.base,
        };
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage
            .cache_write_input_tokens
            .min(usage.input_tokens - cached);
        CostBuilder::default()
            .add(usage.input_tokens - cached - written, rates.input)
            .add(cached, rates.cached_input.unwrap_or(rates.input))
            .add(written, rates.cache_write.unwrap_or(rates.input))
            .add(usage.output_tokens, rates.output)
            .total()
    }

    /// The price of a typical request mix, 3 input tokens to 1 output token, per million.
    pub fn blended_price(&self) -> Money {
        let rates = self.pricing.base;
        Money::from_nanos((3 * rates.input.0.nanos() + rates.output.0.nanos()) / 4)
    }
}

/// A provider's catalog entry: display name and where its prices come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// Which provider.
    pub id: ProviderId,
    /// Display name.
    pub name: String,
    /// Where the list prices were read.
    pub pricing_source: String,
}

/// A validated catalog snapshot.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub(crate) providers: Vec<ProviderInfo>,
    pub(crate) models: Vec<Arc<Model>>,
    pub(crate) by_id: HashMap<String, usize>,
    pub(crate) embedding_models: Vec<Arc<EmbeddingModel>>,
}

impl Catalog {
    /// Every model, in file order.
    pub fn models(&self) -> &[Arc<Model>] {
        &self.models
    }

    /// The model clients pin with `id`.
    pub fn model(&self, id: &str) -> Option<&Arc<Model>> {
        self.by_id.get(id).map(|&i| &self.models[i])
    }

    /// The models of one tier, in file order.
    pub fn tier(&self, tier: Tier) -> impl Iterator<Item = &Arc<Model>> {
        self.models.iter().filter(move |m| m.tier == tier)
    }

    /// Provider entries.
    pub fn providers(&self) -> &[ProviderInfo] {
        &self.providers
    }

    /// Every embedding model, in file order.
    pub fn embedding_models(&self) -> &[Arc<EmbeddingModel>] {
        &self.embedding_models
    }

    /// The embedding model clients pin with `id`.
    pub fn embedding_model(&self, id: &str) -> Option<&Arc<EmbeddingModel>> {
        self.embedding_models.iter().find(|m| m.id == id)
    }

    /// The embedding models `alias` may route to, in file order.
    pub fn embedding_alias(
        &self,
        alias: EmbeddingAlias,
    ) -> impl Iterator<Item = &Arc<EmbeddingModel>> {
        self.embedding_models
            .iter()
            .filter(move |m| m.serves(alias))
    }
}
