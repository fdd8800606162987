//! Gateway settings. Filled by the `modelrouter` binary from its config file
//! and environment; every field has a documented default.

use std::collections::BTreeMap;
use std::time::Duration;

use catalog::ProviderId;
use serde::Deserialize;

pub use crate::accounts::AccountsConfig;
pub use crate::auto::AutoConfig;
pub use crate::embeddings::EmbeddingsConfig;
pub use crate::health::breaker::BreakerConfig;
pub use crate::health::latency::LatencyConfig;

/// How the gateway serves requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Largest accepted request body (default 32 MiB: a 1M-token prompt fits).
    pub body_limit_bytes: usize,
    /// Memory for request bodies being read or held at once (default
    /// 512 MiB): each request takes its declared length (the body limit when
    /// it declares none); beyond it requests get 503 `server_busy`.
    pub body_memory_bytes: usize,
    /// Deadline for one request across all fallback attempts (default 300 s).
    pub total_timeout_ms: u64,
    /// Per-provider connection settings; a provider without an API key is not used.
    pub providers: BTreeMap<ProviderId, ProviderSettings>,
    /// Circuit breakers (`[gateway.breaker]`).
    pub breaker: BreakerConfig,
    /// Observed-latency tracking for `prefer: fast` (`[gateway.latency]`).
    pub latency: LatencyConfig,
    /// Tier thresholds of `model: "auto"` (`[gateway.auto]`).
    pub auto: AutoConfig,
    /// Fan-out and size limits of `/v1/embeddings` (`[gateway.embeddings]`).
    pub embeddings: EmbeddingsConfig,
    /// Credit enforcement: the free-model rate limit (`[gateway.accounts]`).
    pub accounts: AccountsConfig,
    /// How long the usage publisher gathers events into one log append:
    /// longer means fewer, larger appends. Unset: [`crate::usage::DEFAULT_LINGER`]
    /// (20 ms), or `up`'s longer default.
    pub usage_linger_ms: Option<u64>,
    /// Load the o200k tokenizer (about 70 MB) at start (default false: on
    /// the first request that needs an exact count, which waits ~50 ms once;
    /// most requests are decided by their size in bytes and never do).
    pub preload_tokenizer: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            body_limit_bytes: 32 << 20,
            body_memory_bytes: 512 << 20,
            total_timeout_ms: 300_000,
            providers: BTreeMap::new(),
            breaker: BreakerConfig::default(),
            latency: LatencyConfig::default(),
            auto: AutoConfig::default(),
            embeddings: EmbeddingsConfig::default(),
            accounts: AccountsConfig::default(),
            usage_linger_ms: None,
            preload_tokenizer: false,
        }
    }
}

impl GatewayConfig {
    /// The deadline for one request across all attempts.
    pub fn total_timeout(&self) -> Duration {
        Duration::from_millis(self.total_timeout_ms)
    }
}

/// Where and how to reach one provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    /// API base URL; the provider's public endpoint when absent.
    pub base_url: Option<String>,
    /// API key (for Bedrock: the AWS secret access key); usually from the
    /// provider's standard environment variable.
    pub api_key: Option<String>,
    /// Bedrock: the AWS access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Bedrock: the session token of temporary credentials (`AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
    /// Bedrock: the AWS region (`AWS_REGION`, default us-east-1).
    pub region: Option<String>,
    /// TCP + TLS connect timeout (default 5 s).
    pub connect_timeout_ms: u64,
    /// Time from sending the request to the response headers (default 60 s).
    pub first_byte_timeout_ms: u64,
    /// Longest silence between two stream chunks, or to read a whole non-stream body (default 120 s).
    pub idle_timeout_ms: u64,
    /// Idle keep-alive connections kept per host (default 256).
    pub pool_max_idle_per_host: usize,
}

impl ProviderSettings {
    /// Points these settings at a simulated provider: `base_url`, its `key`,
    /// and (used by Bedrock only) its AWS `access_key_id`.
    pub fn simulated(&mut self, base_url: String, key: &str, access_key_id: &str) {
        self.base_url = Some(base_url);
        self.api_key = Some(key.to_owned());
        self.access_key_id = Some(access_key_id.to_owned());
    }
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            base_url: None,
            api_key: None,
            access_key_id: None,
            session_token: None,
            region: None,
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 60_000,
            idle_timeout_ms: 120_000,
            pool_max_idle_per_host: 256,
        }
    }
}
