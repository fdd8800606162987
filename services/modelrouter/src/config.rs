//! The one typed configuration: defaults, then an optional TOML file
//! (`MODELROUTER_CONFIG` or `--config`), then environment variables, layered
//! by `figment`. Each variable maps to one key path ([`ENV`]); every field
//! and variable is listed in the README.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use catalog::ProviderId;
use control_plane::ControlPlaneConfig;
use figment::providers::{Format, Toml};
use gateway::server::ServerConfig;
use gateway::GatewayConfig;
use payments::stripe::StripeConfig;
use serde::Deserialize;
use simulator::SimulatorConfig;

/// Why the configuration could not be assembled: figment's error names the
/// key and where its value came from (the file, or the variable).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("configuration: {key} = {value} is more than {max}")]
    TooLarge {
        key: &'static str,
        value: u64,
        max: u64,
    },
}

/// The longest linger either gathering may be set to: a longer one keeps
/// usage out of the books (and, in a fleet, each gateway's spend out of the
/// others' views) for longer than anyone would choose; it is a slip of
/// units (seconds for milliseconds).
pub const MAX_LINGER_MS: u64 = 10_000;

/// When `modelrouter up` serves providers from the built-in simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SimulatorMode {
    /// Only when no provider API key is set.
    #[default]
    Auto,
    /// Always.
    #[serde(alias = "1", alias = "true")]
    On,
    /// Never.
    #[serde(alias = "0", alias = "false")]
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
    /// Trace destinations' headers (tokens) are sealed under this (at least
    /// 32 bytes); the control plane and the exporter must share it. Unset:
    /// generated once into `data_dir/secrets/`.
    pub telemetry_secret: Option<String>,
    /// Trace export settings (`[exporter]`).
    pub exporter: exporter::ExporterConfig,
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

/// How long `up`'s usage publisher gathers events into one log append,
/// unless configured. In `up` the one gateway counts its own spend until the
/// ledger's state holds it, so a longer wait loosens no limit; it delays
/// only when the dashboard shows a request. Every append costs a commit, and
/// every fold about ten statements and a publish of account states, whatever
/// their size, so at a few hundred requests a second gathering is what keeps
/// the books' cost per request low (`docs/PERFORMANCE.md`).
pub const EMBEDDED_USAGE_LINGER_MS: u64 = 400;
/// How long `up`'s ledger gathers records after the first, unless
/// configured: not at all. With one gateway, its publisher's gathering
/// ([`EMBEDDED_USAGE_LINGER_MS`]) already makes the batch; a second wait
/// would only add lag, and split batches the publisher made whole.
pub const EMBEDDED_LEDGER_LINGER_MS: u64 = 0;

/// Ledger settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// How long after a declined auto-recharge the next may start (default 1 h).
    pub recharge_retry_s: u64,
    /// How long the ledger gathers records after the first before folding
    /// them: at low rates, one transaction for several. Unset:
    /// [`ledger::service::DEFAULT_LINGER`] (50 ms), or `up`'s longer default.
    pub linger_ms: Option<u64>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            recharge_retry_s: 3_600,
            linger_ms: None,
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
            telemetry_secret: None,
            exporter: exporter::ExporterConfig::default(),
            first_user_email: "admin@localhost".into(),
            public_url: None,
            stripe: StripeConfig::default(),
            ledger: LedgerConfig::default(),
        }
    }
}

/// How a variable's text becomes a value.
#[derive(Clone, Copy)]
enum Shape {
    /// As it is (numbers and booleans are read as the field needs).
    Text,
    /// Comma-separated, each item trimmed.
    List,
}

/// Every environment variable besides the providers' and the key path it sets.
const ENV: &[(&str, &str, Shape)] = &[
    ("MODELROUTER_LISTEN", "listen", Shape::Text),
    ("MODELROUTER_DATA_DIR", "data_dir", Shape::Text),
    ("MODELROUTER_CATALOG", "catalog", Shape::Text),
    ("MODELROUTER_SIMULATOR", "simulator_mode", Shape::Text),
    ("MODELROUTER_EVENT_LOG", "event_log", Shape::Text),
    ("MODELROUTER_NATS_PREFIX", "nats_prefix", Shape::Text),
    ("MODELROUTER_NATS_REPLICAS", "nats_replicas", Shape::Text),
    ("MODELROUTER_DATABASE_URL", "database_url", Shape::Text),
    ("MODELROUTER_GATEWAY_ID", "gateway_id", Shape::Text),
    (
        "MODELROUTER_USAGE_LINGER_MS",
        "gateway.usage_linger_ms",
        Shape::Text,
    ),
    (
        "MODELROUTER_PRELOAD_TOKENIZER",
        "gateway.preload_tokenizer",
        Shape::Text,
    ),
    (
        "MODELROUTER_KEY_HASH_SECRET",
        "key_hash_secret",
        Shape::Text,
    ),
    ("MODELROUTER_SESSION_SECRET", "session_secret", Shape::Text),
    (
        "MODELROUTER_TELEMETRY_SECRET",
        "telemetry_secret",
        Shape::Text,
    ),
    (
        "MODELROUTER_EXPORTER_BACKOFF_MAX_MS",
        "exporter.backoff_max_ms",
        Shape::Text,
    ),
    ("STRIPE_SECRET_KEY", "stripe.secret_key", Shape::Text),
    (
        "STRIPE_WEBHOOK_SECRET",
        "stripe.webhook_secrets",
        Shape::List,
    ),
    ("STRIPE_API_BASE", "stripe.api_base", Shape::Text),
    (
        "MODELROUTER_DEMO_CREDITS",
        "control_plane.demo_credits",
        Shape::Text,
    ),
    (
        "MODELROUTER_RECHARGE_RETRY_S",
        "ledger.recharge_retry_s",
        Shape::Text,
    ),
    (
        "MODELROUTER_LEDGER_LINGER_MS",
        "ledger.linger_ms",
        Shape::Text,
    ),
    ("MODELROUTER_PUBLIC_URL", "public_url", Shape::Text),
    (
        "MODELROUTER_OPERATORS",
        "control_plane.operators",
        Shape::List,
    ),
    (
        "MODELROUTER_SMTP_URL",
        "control_plane.smtp_url",
        Shape::Text,
    ),
    (
        "MODELROUTER_ALERT_FROM",
        "control_plane.alert_from",
        Shape::Text,
    ),
    (
        "MODELROUTER_TRUSTED_PROXIES",
        "control_plane.trusted_proxies",
        Shape::List,
    ),
    (
        "MODELROUTER_FIRST_USER_EMAIL",
        "first_user_email",
        Shape::Text,
    ),
    (
        "MODELROUTER_SESSION_TTL_S",
        "control_plane.session_ttl_s",
        Shape::Text,
    ),
    (
        "MODELROUTER_AUTH_ATTEMPTS_PER_MINUTE",
        "control_plane.auth_attempts_per_minute",
        Shape::Text,
    ),
    (
        "MODELROUTER_DRAIN_DELAY_MS",
        "server.drain_delay_ms",
        Shape::Text,
    ),
    (
        "MODELROUTER_SHUTDOWN_GRACE_MS",
        "server.shutdown_grace_ms",
        Shape::Text,
    ),
    (
        "MODELROUTER_SIM_CHUNK_DELAY_MS",
        "simulator.chunk_delay_ms",
        Shape::Text,
    ),
    (
        "AWS_ACCESS_KEY_ID",
        "gateway.providers.bedrock.access_key_id",
        Shape::Text,
    ),
    (
        "AWS_SESSION_TOKEN",
        "gateway.providers.bedrock.session_token",
        Shape::Text,
    ),
    (
        "AWS_REGION",
        "gateway.providers.bedrock.region",
        Shape::Text,
    ),
];

/// One environment variable as a figment provider, so an error names it.
struct EnvVar {
    name: String,
    key: String,
    value: figment::value::Value,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let nested = figment::util::nest(&self.key, self.value.clone());
        let dict = nested.into_dict().unwrap_or_default();
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// The variables set (non-blank) in `env`, as providers.
fn env_vars(env: &impl Fn(&str) -> Option<String>) -> Vec<EnvVar> {
    let providers = ProviderId::ALL.into_iter().map(|provider| {
        let spec = provider.spec();
        let at = |field: &str| format!("gateway.providers.{provider}.{field}");
        [
            (spec.key_env, at("api_key"), Shape::Text),
            (spec.base_url_env, at("base_url"), Shape::Text),
        ]
    });
    let named = ENV
        .iter()
        .map(|&(name, key, shape)| (name, key.to_owned(), shape))
        .chain(providers.flatten());
    named
        .filter_map(|(name, key, shape)| {
            let text = env(name).filter(|v| !v.trim().is_empty())?;
            let value = match shape {
                Shape::Text => figment::value::Value::from(text),
                Shape::List => figment::value::Value::from(
                    text.split(',')
                        .map(|item| item.trim().to_owned())
                        .collect::<Vec<String>>(),
                ),
            };
            Some(EnvVar {
                name: name.to_owned(),
                key,
                value,
            })
        })
        .collect()
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
        let mut figment = figment::Figment::new();
        if let Some(path) = file {
            // Checked here, so a missing file is an error rather than no layer.
            std::fs::metadata(&path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        for var in env_vars(&env) {
            figment = figment.merge(var);
        }
        // Lossy: a variable's "250" or "true" is read as the number or the
        // boolean its field is; strings stay strings (secrets of digits too).
        let mut config: Config = figment.extract_lossy().map_err(Box::new)?;
        if let Some(url) = &mut config.public_url {
            url.truncate(url.trim_end_matches('/').len());
        }
        let lingers = [
            ("ledger.linger_ms", config.ledger.linger_ms),
            ("gateway.usage_linger_ms", config.gateway.usage_linger_ms),
        ];
        for (key, value) in lingers {
            if let Some(value) = value.filter(|&v| v > MAX_LINGER_MS) {
                return Err(ConfigError::TooLarge {
                    key,
                    value,
                    max: MAX_LINGER_MS,
                });
            }
        }
        Ok(config)
    }

    /// The dashboard's address for links (see `public_url`).
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// Gives the lingers left unset `up`'s defaults ([`EMBEDDED_LEDGER_LINGER_MS`],
    /// [`EMBEDDED_USAGE_LINGER_MS`]); a configured one stays.
    pub fn embedded_lingers(&mut self) {
        self.ledger
            .linger_ms
            .get_or_insert(EMBEDDED_LEDGER_LINGER_MS);
        self.gateway
            .usage_linger_ms
            .get_or_insert(EMBEDDED_USAGE_LINGER_MS);
    }

    /// How long the usage publisher gathers events into one log append.
    pub fn usage_linger(&self) -> Duration {
        self.gateway
            .usage_linger_ms
            .map_or(gateway::usage::DEFAULT_LINGER, Duration::from_millis)
    }

    /// How long the ledger gathers records after the first before folding them.
    pub fn ledger_linger(&self) -> Duration {
        self.ledger
            .linger_ms
            .map_or(ledger::service::DEFAULT_LINGER, Duration::from_millis)
    }

    /// Whether any provider has an API key.
    pub fn has_provider_keys(&self) -> bool {
        self.gateway.providers.values().any(|p| p.api_key.is_some())
    }
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

    /// `up` gathers once, in its publisher, longer than a fleet's gateways
    /// do, and not again in its ledger, unless told otherwise; a linger set
    /// in the file or the environment is kept as set.
    #[test]
    fn up_gathers_once_unless_configured() {
        let mut config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.ledger_linger(), ledger::service::DEFAULT_LINGER);
        assert_eq!(config.usage_linger(), gateway::usage::DEFAULT_LINGER);
        config.embedded_lingers();
        assert_eq!(config.ledger_linger(), Duration::ZERO);
        assert_eq!(config.usage_linger(), Duration::from_millis(400));

        let mut config = Config::load(
            None,
            env(&[
                ("MODELROUTER_LEDGER_LINGER_MS", "30"),
                ("MODELROUTER_USAGE_LINGER_MS", "0"),
            ]),
        )
        .unwrap();
        config.embedded_lingers();
        assert_eq!(config.ledger_linger(), Duration::from_millis(30));
        assert_eq!(config.usage_linger(), Duration::ZERO);

        // Seconds written for milliseconds: refused, naming the key.
        let error = Config::load(None, env(&[("MODELROUTER_USAGE_LINGER_MS", "60000")]))
            .expect_err("a linger of a minute is refused");
        assert_eq!(
            error.to_string(),
            "configuration: gateway.usage_linger_ms = 60000 is more than 10000"
        );
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
        assert!(err.to_string().contains("MODELROUTER_LISTEN"), "{err}");
    }

    #[test]
    fn variables_keep_their_text_and_take_their_fields_shape() {
        let config = Config::load(
            None,
            env(&[
                // All digits: still a string, not a number.
                (
                    "MODELROUTER_SESSION_SECRET",
                    "12345678901234567890123456789012345",
                ),
                ("GROQ_API_KEY", "0042"),
                ("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b"),
                ("MODELROUTER_OPERATORS", "a@x.io,b@x.io"),
                ("MODELROUTER_NATS_REPLICAS", "3"),
                ("MODELROUTER_SIMULATOR", "true"),
                ("MODELROUTER_PUBLIC_URL", "https://router.example.com/"),
                ("MODELROUTER_EVENT_LOG", "  "),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.session_secret.as_deref(),
            Some("12345678901234567890123456789012345")
        );
        let groq = &config.gateway.providers[&ProviderId::Groq];
        assert_eq!(groq.api_key.as_deref(), Some("0042"));
        assert_eq!(config.stripe.webhook_secrets, ["whsec_a", "whsec_b"]);
        assert_eq!(config.control_plane.operators, ["a@x.io", "b@x.io"]);
        assert_eq!(config.nats_replicas, 3);
        assert_eq!(config.simulator_mode, SimulatorMode::On);
        assert_eq!(config.public_url(), "https://router.example.com");
        assert_eq!(config.event_log, None, "a blank variable is unset");

        for (name, value) in [
            ("MODELROUTER_NATS_REPLICAS", "three"),
            ("MODELROUTER_SIMULATOR", "sometimes"),
            ("MODELROUTER_SESSION_TTL_S", "-1"),
        ] {
            let err = Config::load(None, env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let missing = Path::new("/nonexistent/modelrouter.toml");
        assert!(matches!(
            Config::load(Some(missing), env(&[])),
            Err(ConfigError::Read { .. })
        ));
    }
}
