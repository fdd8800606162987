//! Integration-test helpers: start the real simulator and the real gateway
//! on port 0, wired together as in production, and talk HTTP to them.

pub mod backends;
pub mod dashboard;
pub mod deployment;
pub mod faults;
pub mod metrics;
pub mod otlp;
pub mod stripe;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use catalog::{CatalogHandle, ProviderId};
use gateway::keys::{self, KeyRing};
use gateway::{Gateway, GatewayConfig};
use serde_json::Value;
use simulator::{Simulator, SimulatorConfig};
use tokio::net::TcpListener;

/// What to start.
#[derive(Default)]
pub struct Options {
    /// A catalog file to serve (reloaded every 20 ms when changed); the shipped catalog when `None`.
    pub catalog_file: Option<PathBuf>,
    /// Gateway settings; provider keys and base URLs not set here are filled in for the simulator.
    pub gateway: GatewayConfig,
    /// Providers left unconfigured (as if their key were missing).
    pub without: Vec<ProviderId>,
    /// The account the harness key belongs to.
    pub account: events::AccountId,
    /// Usage publishing and credit enforcement (`None`: no ledger).
    pub events: Option<gateway::Events>,
    /// The key ring (the harness key is added to it); a fresh one when `None`.
    pub keys: Option<Arc<KeyRing>>,
    /// How clients may send requests (timeouts).
    pub server: gateway::server::ServerConfig,
}

/// A running simulator and gateway.
pub struct Harness {
    /// The gateway's base URL (`http://127.0.0.1:port`).
    pub url: String,
    /// The simulator's base URL.
    pub sim_url: String,
    /// A valid API key.
    pub key: String,
    /// The key's account.
    pub account: events::AccountId,
    /// The gateway's state, for white-box checks.
    pub gateway: Arc<Gateway>,
    /// A client for both.
    pub http: reqwest::Client,
}

/// Polls `check` every 20 ms until it holds (`true`) or `within` passes (`false`).
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    (listener, url)
}

impl Harness {
    /// Simulator and gateway with defaults.
    pub async fn start() -> Harness {
        Harness::start_with(Options::default()).await
    }

    /// Simulator and gateway with `options`.
    pub async fn start_with(options: Options) -> Harness {
        let catalog = CatalogHandle::open(options.catalog_file.clone()).expect("catalog loads");
        catalog.spawn_watcher(Duration::from_millis(20));

        let sim_config = SimulatorConfig::default();
        let (sim_listener, sim_url) = listen().await;
        let sim = simulator::router(Simulator::new(sim_config.clone(), Arc::clone(&catalog)));
        tokio::spawn(serve(sim_listener, sim, Default::default()));

        let mut config = options.gateway;
        for provider in ProviderId::ALL {
            let path = simulator::base_path(provider);
            if options.without.contains(&provider) {
                continue;
            }
            let settings = config.providers.entry(provider).or_default();
            // What a test set stays (a dead URL, a wrong key); the rest points at the simulator.
            let url = settings
                .base_url
                .clone()
                .unwrap_or_else(|| format!("{sim_url}{path}"));
            let key = settings
                .api_key
                .clone()
                .unwrap_or_else(|| sim_config.api_key.clone());
            settings.simulated(url, &key, &sim_config.aws_access_key_id);
        }
        let key = keys::generate_key();
        let ring = options.keys.unwrap_or_default();
        ring.insert_key(&key, options.account);
        let gateway =
            Gateway::with_events(config, catalog, ring, options.events).expect("gateway builds");
        let (listener, url) = listen().await;
        let app = gateway::router(Arc::clone(&gateway));
        tokio::spawn(serve(listener, app, options.server));

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        Harness {
            url,
            sim_url,
            key,
            account: options.account,
            gateway,
            http,
        }
    }

    /// `POST /v1/chat/completions` with the harness key.
    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// `POST /v1/embeddings` with the harness key.
    pub async fn embed(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/embeddings", body).await
    }

    /// `POST` a JSON body to a gateway path with the harness key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .expect("gateway reachable")
    }

    /// `GET` a gateway path with the harness key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("gateway reachable")
    }

    /// Sets a simulator fault rule (`{"provider": "openai", "status": 503, ...}`).
    pub async fn fault(&self, rule: Value) {
        let response = self
            .http
            .post(format!("{}/_sim/faults", self.sim_url))
            .json(&rule)
            .send()
            .await
            .expect("simulator reachable");
        assert!(
            response.status().is_success(),
            "fault rule refused: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Clears every simulator fault rule.
    pub async fn clear_faults(&self) {
        let response = self
            .http
            .delete(format!("{}/_sim/faults", self.sim_url))
            .send()
            .await
            .expect("simulator reachable");
        assert!(response.status().is_success());
    }

    /// `GET /v1/router/health`, as JSON.
    pub async fn health(&self) -> Value {
        self.get("/v1/router/health")
            .await
            .json()
            .await
            .expect("health is JSON")
    }

    /// One model's entry in `GET /v1/router/health`.
    pub async fn model_health(&self, model: &str) -> Value {
        let health = self.health().await;
        health["models"]
            .as_array()
            .and_then(|models| models.iter().find(|m| m["model"] == model))
            .cloned()
            .unwrap_or_else(|| panic!("{model} is not in the health report: {health}"))
    }

    /// The request bodies the simulator received, oldest first.
    pub async fn upstream_requests(&self) -> Vec<Value> {
        let list: Value = self
            .http
            .get(format!("{}/_sim/requests", self.sim_url))
            .send()
            .await
            .expect("simulator")
            .json()
            .await
            .expect("json");
        list.as_array().cloned().unwrap_or_default()
    }
}

/// Serves `app` as the services do (the gateway's server, with its timeouts).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    config: gateway::server::ServerConfig,
) {
    let _ = gateway::server::serve(
        listener,
        app,
        &config,
        gateway::probes::Probes::new(),
        std::future::pending(),
    )
    .await;
}

/// A response header's value as text (empty when absent or not text).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Reads an SSE body into its `data` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

/// A user message of roughly `tokens` o200k tokens (each ` hello` is one token).
pub fn prompt_of_tokens(tokens: usize) -> String {
    " hello".repeat(tokens)
}

/// Runs the async test `fn $name(backends: Backends)` twice, as
/// `$name::on_nats_and_postgres` and `$name::embedded`: every guarantee of
/// the backbone holds on both logs and stores.
#[macro_export]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_nats_and_postgres() {
                super::$name($crate::backends::Backends::distributed().await).await;
            }

            #[tokio::test]
            async fn embedded() {
                super::$name($crate::backends::Backends::embedded().await).await;
            }
        }
    };
}
