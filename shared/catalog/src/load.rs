//! Reading and validating a catalog file.
//!
//! A bad file is refused whole, with a message naming the offending field
//! (`models[3] (gpt-4.1).context_window: ...`), so a running router keeps its
//! previous catalog rather than routing on half-understood data.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use money::{Money, PricePerMTok};
use serde::Deserialize;

use crate::embedding::{BatchLimits, EmbeddingAlias, EmbeddingModel, NativeDimensions};
use crate::model::{
    Capabilities, Catalog, LatencySeed, Model, Pricing, PricingRates, ProviderId, ProviderInfo,
    Tier,
};

/// Why a catalog was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The TOML does not have the catalog's shape.
    #[error("catalog field `{field}`: {message}")]
    Syntax { field: String, message: String },
    /// A field has a value the router cannot route on.
    #[error("catalog field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    version: u32,
    providers: BTreeMap<ProviderId, RawProvider>,
    models: Vec<RawModel>,
    #[serde(default)]
    embedding_models: Vec<RawEmbeddingModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbeddingModel {
    id: String,
    provider: ProviderId,
    provider_model_id: String,
    aliases: Vec<EmbeddingAlias>,
    dimensions: u32,
    native_dimensions: Option<RawNativeDimensions>,
    max_input_tokens: u32,
    max_batch_inputs: u32,
    max_batch_tokens: Option<u32>,
    input_per_mtok: Money,
    quality: u8,
    #[serde(default)]
    scores_note: Option<String>,
    ttft_ms: u32,
}

/// `native_dimensions = { min = 1 }` or `native_dimensions = [256, 512, 1024]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawNativeDimensions {
    From { min: u32 },
    OneOf(Vec<u32>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    pricing_source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    provider: ProviderId,
    provider_model_id: String,
    tier: Tier,
    context_window: u32,
    max_output_tokens: u32,
    input_per_mtok: Money,
    output_per_mtok: Money,
    cached_input_per_mtok: Option<Money>,
    cache_write_per_mtok: Option<Money>,
    long_context: Option<RawLongContext>,
    quality: u8,
    coding: u8,
    #[serde(default)]
    scores_note: Option<String>,
    ttft_ms: u32,
    output_tokens_per_s: u32,
    #[serde(default)]
    reasoning: bool,
    #[serde(default)]
    free: bool,
    capabilities: Vec<RawCapability>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLongContext {
    above_input_tokens: u32,
    input_per_mtok: Money,
    output_per_mtok: Money,
    cached_input_per_mtok: Option<Money>,
    cache_write_per_mtok: Option<Money>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawCapability {
    Tools,
    Vision,
    Streaming,
    JsonMode,
}

/// The only catalog file format version this build reads.
const SUPPORTED_VERSION: u32 = 1;

impl Catalog {
    /// Parses and validates catalog TOML.
    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let deserializer = toml::Deserializer::new(text);
        let raw: RawCatalog =
            serde_path_to_error::deserialize(deserializer).map_err(|e| CatalogError::Syntax {
                field: e.path().to_string(),
                message: e.inner().message().to_owned(),
            })?;
        build(raw)
    }

    /// Reads, parses and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Catalog::from_toml(&text)
    }

    /// The catalog shipped with this build.
    pub fn builtin() -> Catalog {
        Catalog::from_toml(crate::BUILTIN_TOML)
            .expect("the shipped catalog is validated by its tests")
    }
}

fn invalid(field: String, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        field,
        message: message.into(),
    }
}

fn build(raw: RawCatalog) -> Result<Catalog, CatalogError> {
    if raw.version != SUPPORTED_VERSION {
        return Err(invalid(
            "version".into(),
            format!(
                "this build reads version {SUPPORTED_VERSION}, the file says {}",
                raw.version
            ),
        ));
    }
    let mut providers = Vec::new();
    for (id, p) in raw.providers {
        if p.pricing_source.trim().is_empty() {
            return Err(invalid(
                format!("providers.{id}.pricing_source"),
                "must say where the prices come from",
            ));
        }
        providers.push(ProviderInfo {
            id,
            name: p.name,
            pricing_source: p.pricing_source,
        });
    }
    let mut models = Vec::with_capacity(raw.models.len());
    let mut by_id = HashMap::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        let at = |field: &str| format!("models[{i}] ({}).{field}", m.id);
        if m.id.trim().is_empty() {
            return Err(invalid(format!("models[{i}].id"), "must not be empty"));
        }
        if Tier::parse(&m.id).is_some() || m.id == "auto" || EmbeddingAlias::parse(&m.id).is_some()
        {
            return Err(invalid(
                at("id"),
                "a tier or alias name cannot be a model id",
            ));
        }
        if by_id.insert(m.id.clone(), i).is_some() {
            return Err(invalid(at("id"), "duplicate model id"));
        }
        if !providers.iter().any(|p| p.id == m.provider) {
            return Err(invalid(
                at("provider"),
                format!(
                    "provider `{}` has no [providers.{}] entry",
                    m.provider, m.provider
                ),
            ));
        }
        if m.provider_model_id.trim().is_empty() {
            return Err(invalid(at("provider_model_id"), "must not be empty"));
        }
        if m.context_window == 0 {
            return Err(invalid(at("context_window"), "must be positive"));
        }
        if m.max_output_tokens == 0 || m.max_output_tokens > m.context_window {
            return Err(invalid(
                at("max_output_tokens"),
                "must be positive and at most context_window",
            ));
        }
        if m.quality > 100 {
            return Err(invalid(at("quality"), "must be 0-100"));
        }
        if m.coding > 100 {
            return Err(invalid(at("coding"), "must be 0-100"));
        }
        if m.ttft_ms == 0 {
            return Err(invalid(at("ttft_ms"), "must be positive"));
        }
        if m.output_tokens_per_s == 0 {
            return Err(invalid(at("output_tokens_per_s"), "must be positive"));
        }
        let base = rates(
            &at,
            "",
            m.input_per_mtok,
            m.output_per_mtok,
            m.cached_input_per_mtok,
            m.cache_write_per_mtok,
        )?;
        let long_context = match m.long_context {
            None => None,
            Some(lc) => Some((
                lc.above_input_tokens,
                rates(
                    &at,
                    "long_context.",
                    lc.input_per_mtok,
                    lc.output_per_mtok,
                    lc.cached_input_per_mtok,
                    lc.cache_write_per_mtok,
                )?,
            )),
        };
        let mut capabilities = Capabilities::default();
        for c in m.capabilities {
            match c {
                RawCapability::Tools => capabilities.tools = true,
                RawCapability::Vision => capabilities.vision = true,
                RawCapability::Streaming => capabilities.streaming = true,
                RawCapability::JsonMode => capabilities.json_mode = true,
            }
        }
        models.push(Arc::new(Model {
            id: m.id,
            provider: m.provider,
            provider_model_id: m.provider_model_id,
            tier: m.tier,
            context_window: m.context_window,
            max_output_tokens: m.max_output_tokens,
            pricing: Pricing { base, long_context },
            quality: m.quality,
            coding: m.coding,
            scores_note: m.scores_note,
            latency: LatencySeed {
                ttft_ms: m.ttft_ms,
                output_tokens_per_s: m.output_tokens_per_s,
            },
            capabilities,
            reasoning: m.reasoning,
            free: m.free,
        }));
    }
    if models.is_empty() {
        return Err(invalid("models".into(), "the catalog has no models"));
    }
    let mut embedding_models = Vec::with_capacity(raw.embedding_models.len());
    for (i, m) in raw.embedding_models.into_iter().enumerate() {
        let model = embedding_model(i, m, &providers, &by_id, &embedding_models)?;
        embedding_models.push(Arc::new(model));
    }
    Ok(Catalog {
        providers,
        models,
        by_id,
        embedding_models,
    })
}

fn embedding_model(
    i: usize,
    m: RawEmbeddingModel,
    providers: &[ProviderInfo],
    chat_ids: &HashMap<String, usize>,
    earlier: &[Arc<EmbeddingModel>],
) -> Result<EmbeddingModel, CatalogError> {
    let at = |field: &str| format!("embedding_models[{i}] ({}).{field}", m.id);
    let reserved =
        Tier::parse(&m.id).is_some() || m.id == "auto" || EmbeddingAlias::parse(&m.id).is_some();
    if m.id.trim().is_empty() || reserved {
        return Err(invalid(
            at("id"),
            "must be a model id, not empty or an alias",
        ));
    }
    if chat_ids.contains_key(&m.id) || earlier.iter().any(|e| e.id == m.id) {
        return Err(invalid(at("id"), "duplicate model id"));
    }
    if !providers.iter().any(|p| p.id == m.provider) {
        return Err(invalid(
            at("provider"),
            format!(
                "provider `{}` has no [providers.{}] entry",
                m.provider, m.provider
            ),
        ));
    }
    if m.provider_model_id.trim().is_empty() {
        return Err(invalid(at("provider_model_id"), "must not be empty"));
    }
    if m.aliases.is_empty() {
        return Err(invalid(at("aliases"), "name at least one alias"));
    }
    if m.dimensions == 0 {
        return Err(invalid(at("dimensions"), "must be positive"));
    }
    let native_dimensions = match m.native_dimensions {
        None => NativeDimensions::DefaultOnly,
        Some(RawNativeDimensions::From { min }) if (1..=m.dimensions).contains(&min) => {
            NativeDimensions::From { min }
        }
        Some(RawNativeDimensions::OneOf(sizes))
            if !sizes.is_empty()
                && sizes.windows(2).all(|w| w[0] < w[1])
                && sizes.iter().all(|&s| (1..=m.dimensions).contains(&s)) =>
        {
            NativeDimensions::OneOf(sizes)
        }
        Some(_) => {
            return Err(invalid(
                at("native_dimensions"),
                "must be { min = N } or ascending sizes, each from 1 to `dimensions`",
            ))
        }
    };
    if m.max_input_tokens == 0 {
        return Err(invalid(at("max_input_tokens"), "must be positive"));
    }
    if m.max_batch_inputs == 0 {
        return Err(invalid(at("max_batch_inputs"), "must be positive"));
    }
    if m.max_batch_tokens.is_some_and(|t| t < m.max_input_tokens) {
        return Err(invalid(
            at("max_batch_tokens"),
            "must hold at least one input of max_input_tokens",
        ));
    }
    if m.input_per_mtok < Money::ZERO {
        return Err(invalid(at("input_per_mtok"), "a price cannot be negative"));
    }
    if m.quality > 100 {
        return Err(invalid(at("quality"), "must be 0-100"));
    }
    if m.ttft_ms == 0 {
        return Err(invalid(at("ttft_ms"), "must be positive"));
    }
    Ok(EmbeddingModel {
        id: m.id,
        provider: m.provider,
        provider_model_id: m.provider_model_id,
        aliases: m.aliases,
        dimensions: m.dimensions,
        native_dimensions,
        max_input_tokens: m.max_input_tokens,
        batch: BatchLimits {
            max_inputs: m.max_batch_inputs,
            max_tokens: m.max_batch_tokens,
        },
        input_per_mtok: PricePerMTok(m.input_per_mtok),
        quality: m.quality,
        scores_note: m.scores_note,
        ttft_ms: m.ttft_ms,
    })
}

fn rates(
    at: &dyn Fn(&str) -> String,
    prefix: &str,
    input: Money,
    output: Money,
    cached: Option<Money>,
    cache_write: Option<Money>,
) -> Result<PricingRates, CatalogError> {
    for (name, price) in [
        ("input_per_mtok", Some(input)),
        ("output_per_mtok", Some(output)),
        ("cached_input_per_mtok", cached),
        ("cache_write_per_mtok", cache_write),
    ] {
        if price.is_some_and(|p| p < Money::ZERO) {
            return Err(invalid(
                at(&format!("{prefix}{name}")),
                "a price cannot be negative",
            ));
        }
    }
    Ok(PricingRates {
        input: PricePerMTok(input),
        output: PricePerMTok(output),
        cached_input: cached.map(PricePerMTok),
        cache_write: cache_write.map(PricePerMTok),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenUsage;

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn shipped_catalog_is_valid_and_complete() {
        let catalog = Catalog::builtin();
        for p in ProviderId::ALL {
            assert!(
                catalog.providers().iter().any(|i| i.id == p),
                "{p} has no provider entry"
            );
            assert!(
                catalog.models().iter().any(|m| m.provider == p),
                "{p} has no model"
            );
        }
        // The product's "Current tiers" list: each tier holds exactly these.
        let product = [
            (
                Tier::Economy,
                &[
                    "gemini-2.5-flash",
                    "gpt-4.1-mini",
                    "o4-mini",
                    "claude-haiku-4-5",
                    "grok-3-mini-beta",
                    "nvidia.nemotron-nano-3-30b",
                    "nvidia.nemotron-nano-9b-v2",
                    "zai.glm-4.7-flash",
                    "qwen.qwen3-32b-v1:0",
                    "openai.gpt-oss-120b-1:0",
                    "llama-3.3-70b-versatile",
                    "meta-llama/llama-4-scout-17b-16e-instruct",
                    "llama3.1-8b",
                    "qwen-3-235b-a22b-instruct-2507",
                ][..],
            ),
            (
                Tier::Standard,
                &[
                    "gemini-2.5-pro",
                    "gpt-4.1",
                    "gpt-5.3-chat-latest",
                    "gpt-5.3-codex",
                    "gpt-5.1-codex-mini",
                    "o3",
                    "claude-sonnet-4-6",
                    "grok-3-beta",
                    "zai.glm-4.7",
                    "deepseek.v3.2",
                    "mistral.mistral-large-3-675b-instruct",
                    "moonshotai.kimi-k2.5",
                    "minimax.minimax-m2.1",
                    "qwen.qwen3-next-80b-a3b",
                    "us.meta.llama4-maverick-17b-instruct-v1:0",
                    "us.meta.llama4-scout-17b-instruct-v1:0",
                    "mistral.devstral-2-123b",
                    "qwen.qwen3-coder-480b-a35b-v1:0",
                    "nvidia.nemotron-super-3-120b",
                    "qwen.qwen3-235b-a22b-2507-v1:0",
                ][..],
            ),
            (
                Tier::Premium,
                &[
                    "gemini-3.1-pro-preview",
                    "claude-opus-4-7",
                    "claude-opus-4-6",
                    "gpt-5.4",
                    "zai.glm-5",
                ][..],
            ),
        ];
        for (tier, ids) in product {
            let mut listed: Vec<&str> = ids.to_vec();
            let mut held: Vec<&str> = catalog
                .models()
                .iter()
                .filter(|m| m.tier == tier)
                .map(|m| m.id.as_str())
                .collect();
            listed.sort_unstable();
            held.sort_unstable();
            assert_eq!(held, listed, "{tier} holds what the product lists");
        }
        for m in catalog.models() {
            let free_provider = matches!(m.provider, ProviderId::Groq | ProviderId::Cerebras);
            assert_eq!(
                m.free, free_provider,
                "{}: free flag must match the provider",
                m.id
            );
        }
        assert!(catalog
            .models()
            .iter()
            .any(|m| m.provider == ProviderId::Bedrock && m.tier == Tier::Economy));
    }

    #[test]
    fn bad_field_is_named() {
        let text =
            crate::BUILTIN_TOML.replacen("context_window = 1047576", "context_window = \"big\"", 1);
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("models[1].context_window"), "{err}");

        let text = crate::BUILTIN_TOML.replacen("tier = \"economy\"", "tier = \"cheapest\"", 1);
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("models[0].tier"), "{err}");

        let text = crate::BUILTIN_TOML.replacen(
            "max_output_tokens = 65536",
            "max_output_tokens = 9999999",
            1,
        );
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains("models[0] (gemini-2.5-flash).max_output_tokens"),
            "{err}"
        );

        let text = crate::BUILTIN_TOML.replacen(
            "input_per_mtok = \"0.30\"",
            "input_per_mtok = \"0.3x\"",
            1,
        );
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("models[0].input_per_mtok"), "{err}");

        let text =
            crate::BUILTIN_TOML.replacen("id = \"gpt-4.1-mini\"", "id = \"gemini-2.5-flash\"", 1);
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("duplicate model id"), "{err}");

        let text = crate::BUILTIN_TOML.replacen("quality = 51", "quality = 51\nflavour = 3", 1);
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains("models[0]") && err.contains("flavour"),
            "{err}"
        );
    }

    #[test]
    fn bad_embedding_model_fields_are_named() {
        let cases = [
            (
                "native_dimensions = [256, 512, 1024]",
                "native_dimensions = [512, 256]",
                "titan-embed-text-v2).native_dimensions",
            ),
            (
                "native_dimensions = [256, 512, 1024]",
                "native_dimensions = [256, 2048]",
                "native_dimensions",
            ),
            (
                "aliases = [\"embed-titan\", \"embed-small\"]",
                "aliases = []",
                "titan-embed-text-v2).aliases",
            ),
            (
                "aliases = [\"embed-titan\", \"embed-small\"]",
                "aliases = [\"embed-huge\"]",
                "aliases",
            ),
            (
                "id = \"titan-embed-text-v2\"",
                "id = \"gpt-4.1\"",
                "duplicate model id",
            ),
            (
                "id = \"titan-embed-text-v2\"",
                "id = \"embed-small\"",
                "not empty or an alias",
            ),
            (
                "max_batch_tokens = 300000",
                "max_batch_tokens = 100",
                "max_batch_tokens",
            ),
            (
                "max_batch_inputs = 1\n",
                "max_batch_inputs = 0\n",
                "max_batch_inputs",
            ),
        ];
        for (from, to, says) in cases {
            let text = crate::BUILTIN_TOML.replacen(from, to, 1);
            assert_ne!(text, crate::BUILTIN_TOML, "{from} not found");
            let err = Catalog::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{to}: {err}");
        }
    }

    #[test]
    fn cost_uses_cached_and_long_context_rates_and_free_flag() {
        let catalog = Catalog::builtin();
        let gpt41 = catalog.model("gpt-4.1").unwrap();
        // 10,000 in (4,000 cached) and 1,000 out: 6000×2 + 4000×0.5 + 1000×8 = 22,000 µ$ → $0.022.
        let usage = TokenUsage {
            input_tokens: 10_000,
            cached_input_tokens: 4_000,
            output_tokens: 1_000,
            ..Default::default()
        };
        assert_eq!(gpt41.cost(&usage), money("0.022"));

        let pro = catalog.model("gemini-2.5-pro").unwrap();
        let short = TokenUsage {
            input_tokens: 200_000,
            output_tokens: 1_000,
            ..Default::default()
        };
        let long = TokenUsage {
            input_tokens: 200_001,
            ..short
        };
        assert_eq!(pro.cost(&short), money("0.26")); // 0.25 + 0.01
        assert_eq!(pro.cost(&long), money("0.5150025")); // 200001 × 2.5/M + 1000 × 15/M

        let free = catalog.model("llama-3.3-70b-versatile").unwrap();
        assert_eq!(free.cost(&usage), Money::ZERO);
    }

    #[test]
    fn cache_writes_bill_at_their_own_rate_or_the_input_rate() {
        let catalog = Catalog::builtin();
        // Sonnet: 10,000 in, of which 2,000 read from and 3,000 written to the cache, 100 out:
        // 5,000×3 + 2,000×0.30 + 3,000×3.75 + 100×15 = 28,350 µ$.
        let usage = TokenUsage {
            input_tokens: 10_000,
            cached_input_tokens: 2_000,
            cache_write_input_tokens: 3_000,
            output_tokens: 100,
        };
        let sonnet = catalog.model("claude-sonnet-4-6").unwrap();
        assert_eq!(sonnet.cost(&usage), money("0.02835"));
        // No cache-write price: writes cost what input costs.
        let gpt41 = catalog.model("gpt-4.1").unwrap();
        let plain = TokenUsage {
            cache_write_input_tokens: 0,
            ..usage
        };
        assert_eq!(gpt41.cost(&usage), gpt41.cost(&plain));
    }
}
