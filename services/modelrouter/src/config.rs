//! The one typed configuration: defaults, then an optional TOML file
//! (`MODELROUTER_CONFIG` or `--config`), then environment variables.
//! Every field and variable is listed in the README.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use catalog::ProviderId;
use control_plane::ControlPlaneConfig;
use gateway::server::ServerConfig;
use gateway::GatewayConfig;
use payments::stripe::StripeConfig;
use serde::Deserialize;
use simulator::SimulatorConfig;

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("environment variable {name}={value:?}: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// When `modelrouter up` serves providers from the built-in simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SimulatorMode {
    /// Only when no provider API key is set.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Everything `modelrouter` reads at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the API (and, in embedded mode, everything else) listens.
    pub listen: SocketAddr,
    /// Where state lives (API key digests).
    pub data_dir: PathBuf,
    /// A catalog file to use instead of the shipped one; reloaded on change or SIGHUP.
    pub catalog: Option<PathBuf>,
    /// How often the catalog file is checked for changes.
    pub catalog_poll_ms: u64,
    /// Simulator use in embedded mode.
    pub simulator_mode: SimulatorMode,
    /// How clients may send requests: header and body read timeouts.
    pub server: ServerConfig,
    /// Gateway settings, including per-provider connection settings.
    pub gateway: GatewayConfig,
    /// Simulator settings.
    pub simulator: SimulatorConfig,
    /// The event log: `nats://host:port` (distributed), or none for the
    /// embedded SQLite log in `data_dir`.
    pub event_log: Option<String>,
    /// The prefix of this deployment's NATS subjects, stream and buckets.
    pub nats_prefix: String,
    /// Copies a NATS cluster keeps of the stream and buckets this deployment
    /// creates (3 on a three-node cluster; a stream made earlier keeps its own).
    pub nats_replicas: usize,
    /// The ledger's database: `postgres://…`, or none for SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// This gateway's id in usage events; a fresh random one per start when unset.
    pub gateway_id: Option<String>,
    /// Dashboard and admin API settings.
    pub control_plane: ControlPlaneConfig,
    /// API keys are stored as HMAC-SHA256 under this secret (at least 32
    /// bytes); every gateway and the control plane of a deployment must share
    /// it. Unset: generated once into `data_dir/secrets/`.
    pub key_hash_secret: Option<String>,
    /// Dashboard sessions are signed with this (at least 32 bytes). Unset:
    /// generated once into `data_dir/secrets/`.
    pub session_secret: Option<String>,
    /// The email of the first account's user, created by `modelrouter up` on
    /// a fresh installation.
    pub first_user_email: String,
    /// The address users reach the dashboard at, for links the service
    /// prints or sends (password resets, payment pages); `http://` + `listen`
    /// when unset.
    pub public_url: Option<String>,
    /// Card payments (`[stripe]`).
    pub stripe: StripeConfig,
    /// Ledger settings (`[ledger]`).
    pub ledger: LedgerConfig,
}

/// Ledger settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// How long after a declined auto-recharge the next may start (default 1 h).
    pub recharge_retry_s: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            recharge_retry_s: 3_600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            catalog: None,
            catalog_poll_ms: 2_000,
            simulator_mode: SimulatorMode::Auto,
            server: ServerConfig::default(),
            gateway: GatewayConfig::default(),
            simulator: SimulatorConfig {
                chunk_delay_ms: 15,
                ..SimulatorConfig::default()
            },
            event_log: None,
            nats_prefix: "mr".into(),
            nats_replicas: 1,
            database_url: None,
            gateway_id: None,
            control_plane: ControlPlaneConfig::default(),
            key_hash_secret: None,
            session_secret: None,
            first_user_email: "admin@localhost".into(),
            public_url: None,
            stripe: StripeConfig::default(),
            ledger: LedgerConfig::default(),
        }
    }
}

/// The environment variables holding a provider's key and base URL, for the
/// providers this build has an adapter for.
pub fn provider_env(provider: ProviderId) -> Option<(&'static str, &'static str)> {
    match provider {
        ProviderId::Openai => Some(("OPENAI_API_KEY", "OPENAI_BASE_URL")),
        ProviderId::Xai => Some(("XAI_API_KEY", "XAI_BASE_URL")),
        ProviderId::Groq => Some(("GROQ_API_KEY", "GROQ_BASE_URL")),
        ProviderId::Cerebras => Some(("CEREBRAS_API_KEY", "CEREBRAS_BASE_URL")),
        ProviderId::Anthropic => Some(("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")),
        ProviderId::Google => Some(("GEMINI_API_KEY", "GEMINI_BASE_URL")),
        // The secret access key; the access key id, session token and region follow AWS's names too.
        ProviderId::Bedrock => Some(("AWS_SECRET_ACCESS_KEY", "BEDROCK_BASE_URL")),
    }
}

impl Config {
    /// Defaults, then `file` (or `MODELROUTER_CONFIG`), then the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env("MODELROUTER_CONFIG").map(PathBuf::from));
        let mut config = match file {
            None => Config::default(),
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: shown,
                    source,
                })?
            }
        };
        config.apply_env(&env)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let present = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = present("MODELROUTER_LISTEN") {
            self.listen = parse("MODELROUTER_LISTEN", &v)?;
        }
        if let Some(v) = present("MODELROUTER_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = present("MODELROUTER_CATALOG") {
            self.catalog = Some(PathBuf::from(v));
        }
        if let Some(v) = present("MODELROUTER_SIMULATOR") {
            self.simulator_mode = match v.as_str() {
                "auto" => SimulatorMode::Auto,
                "on" | "1" | "true" => SimulatorMode::On,
                "off" | "0" | "false" => SimulatorMode::Off,
                _ => {
                    return Err(ConfigError::Env {
                        name: "MODELROUTER_SIMULATOR",
                        value: v,
                        reason: "use auto, on or off".into(),
                    })
                }
            };
        }
        if let Some(v) = present("MODELROUTER_EVENT_LOG") {
            self.event_log = Some(v);
        }
        if let Some(v) = present("MODELROUTER_NATS_PREFIX") {
            self.nats_prefix = v;
        }
        if let Some(v) = present("MODELROUTER_NATS_REPLICAS") {
            self.nats_replicas = parse("MODELROUTER_NATS_REPLICAS", &v)?;
        }
        if let Some(v) = present("MODELROUTER_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = present("MODELROUTER_GATEWAY_ID") {
            self.gateway_id = Some(v);
        }
        if let Some(v) = present("MODELROUTER_USAGE_LINGER_MS") {
            self.gateway.usage_linger_ms = parse("MODELROUTER_USAGE_LINGER_MS", &v)?;
        }
        if let Some(v) = present("MODELROUTER_KEY_HASH_SECRET") {
            self.key_hash_secret = Some(v);
        }
        if let Some(v) = present("MODELROUTER_SESSION_SECRET") {
            self.session_secret = Some(v);
        }
        if let Some(v) = present("STRIPE_SECRET_KEY") {
            self.stripe.secret_key = Some(v);
        }
        if let Some(v) = present("STRIPE_WEBHOOK_SECRET") {
            self.stripe.webhook_secrets = v.split(',').map(|s| s.trim().to_owned()).collect();
        }
        if let Some(v) = present("STRIPE_API_BASE") {
            self.stripe.api_base = Some(v);
        }
        if let Some(v) = present("MODELROUTER_DEMO_CREDITS") {
            self.control_plane.demo_credits = Some(v);
        }
        if let Some(v) = present("MODELROUTER_RECHARGE_RETRY_S") {
            self.ledger.recharge_retry_s = parse("MODELROUTER_RECHARGE_RETRY_S", &v)?;
        }
        if let Some(v) = present("MODELROUTER_PUBLIC_URL") {
            self.public_url = Some(v.trim_end_matches('/').to_owned());
        }
        if let Some(v) = present("MODELROUTER_OPERATORS") {
            self.control_plane.operators = v.split(',').map(|e| e.trim().to_owned()).collect();
        }
        if let Some(v) = present("MODELROUTER_TRUSTED_PROXIES") {
            self.control_plane.trusted_proxies =
                v.split(',').map(|e| e.trim().to_owned()).collect();
        }
        if let Some(v) = present("MODELROUTER_FIRST_USER_EMAIL") {
            self.first_user_email = v;
        }
        if let Some(v) = present("MODELROUTER_SESSION_TTL_S") {
            self.control_plane.session_ttl_s = parse("MODELROUTER_SESSION_TTL_S", &v)?;
        }
        if let Some(v) = present("MODELROUTER_AUTH_ATTEMPTS_PER_MINUTE") {
            self.control_plane.auth_attempts_per_minute =
                parse("MODELROUTER_AUTH_ATTEMPTS_PER_MINUTE", &v)?;
        }
        if let Some(v) = present("MODELROUTER_DRAIN_DELAY_MS") {
            self.server.drain_delay_ms = parse("MODELROUTER_DRAIN_DELAY_MS", &v)?;
        }
        if let Some(v) = present("MODELROUTER_SHUTDOWN_GRACE_MS") {
            self.server.shutdown_grace_ms = parse("MODELROUTER_SHUTDOWN_GRACE_MS", &v)?;
        }
        if let Some(v) = present("MODELROUTER_SIM_CHUNK_DELAY_MS") {
            self.simulator.chunk_delay_ms = parse("MODELROUTER_SIM_CHUNK_DELAY_MS", &v)?;
        }
        for provider in ProviderId::ALL {
            let Some((key_var, url_var)) = provider_env(provider) else {
                continue;
            };
            let key = present(key_var);
            let url = present(url_var);
            if key.is_none() && url.is_none() {
                continue;
            }
            let settings = self.gateway.providers.entry(provider).or_default();
            if key.is_some() {
                settings.api_key = key;
            }
            if url.is_some() {
                settings.base_url = url;
            }
        }
        let aws = [
            ("AWS_ACCESS_KEY_ID", present("AWS_ACCESS_KEY_ID")),
            ("AWS_SESSION_TOKEN", present("AWS_SESSION_TOKEN")),
            ("AWS_REGION", present("AWS_REGION")),
        ];
        if aws.iter().any(|(_, v)| v.is_some()) {
            let bedrock = self
                .gateway
                .providers
                .entry(ProviderId::Bedrock)
                .or_default();
            let [(_, id), (_, token), (_, region)] = aws;
            bedrock.access_key_id = id.or(bedrock.access_key_id.take());
            bedrock.session_token = token.or(bedrock.session_token.take());
            bedrock.region = region.or(bedrock.region.take());
        }
        Ok(())
    }

    /// The dashboard's address for links (see `public_url`).
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// Whether any provider has an API key.
    pub fn has_provider_keys(&self) -> bool {
        self.gateway.providers.values().any(|p| p.api_key.is_some())
    }
}

fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ConfigError::Env {
        name,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_then_file_then_env() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(!config.has_provider_keys());

        let dir = std::env::temp_dir().join(format!("mr-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\n[gateway]\ntotal_timeout_ms = 5000\n[gateway.providers.groq]\nconnect_timeout_ms = 100\n[gateway.breaker]\nenabled = false\ncooldown_ms = 250\n[gateway.latency]\newma_alpha = 0.5\n").unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("MODELROUTER_LISTEN", "127.0.0.1:9001"),
                ("GROQ_API_KEY", "gsk"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(config.gateway.total_timeout_ms, 5000);
        let breaker = &config.gateway.breaker;
        assert_eq!((breaker.enabled, breaker.cooldown_ms), (false, 250));
        assert_eq!(
            breaker.consecutive_failures, 5,
            "unset fields keep defaults"
        );
        assert_eq!(config.gateway.latency.ewma_alpha, 0.5);
        let groq = &config.gateway.providers[&ProviderId::Groq];
        assert_eq!(
            (groq.connect_timeout_ms, groq.api_key.as_deref()),
            (100, Some("gsk"))
        );
        assert!(config.has_provider_keys());

        std::fs::write(&file, "listen = 3\n").unwrap();
        assert!(Config::load(Some(&file), env(&[]))
            .unwrap_err()
            .to_string()
            .contains("listen"));
        std::fs::remove_dir_all(&dir).ok();

        let aws = Config::load(
            None,
            env(&[
                ("AWS_ACCESS_KEY_ID", "AKIA1"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_REGION", "eu-west-1"),
            ]),
        )
        .unwrap();
        let bedrock = &aws.gateway.providers[&ProviderId::Bedrock];
        assert_eq!(
            (
                bedrock.access_key_id.as_deref(),
                bedrock.api_key.as_deref(),
                bedrock.region.as_deref(),
                bedrock.session_token.as_deref()
            ),
            (Some("AKIA1"), Some("secret"), Some("eu-west-1"), None)
        );
        assert!(aws.has_provider_keys());

        let err = Config::load(None, env(&[("MODELROUTER_LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("MODELROUTER_LISTEN"));
    }
}
