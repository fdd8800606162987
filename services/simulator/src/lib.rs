//! The provider simulator.
//!
//! Serves each upstream's wire format on one HTTP router, under a path prefix
//! per provider that mirrors the real base URL (`/openai/v1`, `/groq/openai/v1`,
//! `/anthropic` for `/anthropic/v1/messages`, `/google` for
//! `/google/v1beta/models/{model}:generateContent`, `/bedrock` for
//! `/bedrock/model/{model}/converse`, ...), embeddings included
//! (`/openai/v1/embeddings`, Gemini `:batchEmbedContents`, Titan `/invoke`). Replies are deterministic functions of the request, usage counts are
//! exact (the o200k tokenizer), and faults — error statuses, latency, 429s with
//! `Retry-After`, streams cut after N chunks — can be set per provider and
//! model through `/_sim/faults` or per request with the `x-sim-fault` header.
// Stripe's objects are written as large `json!` literals.
#![recursion_limit = "256"]

mod anthropic_messages;
mod bedrock_converse;
mod dialect;
mod embeddings;
mod faults;
mod generate;
mod google_gemini;
mod openai_chat;
mod prompt_cache;
mod recorder;
mod sse;
pub mod stripe;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use catalog::{CatalogHandle, ProviderId};
use serde::Deserialize;

pub use dialect::{base_path, Dialect, DIALECTS};
pub use faults::{Fault, FaultRule};
pub use recorder::Recorded;

/// Simulator settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// The API key every simulated provider accepts (Bearer / x-api-key),
    /// and the AWS secret access key of simulated Bedrock.
    pub api_key: String,
    /// The AWS access key id simulated Bedrock accepts (its secret is `api_key`).
    pub aws_access_key_id: String,
    /// Pause between stream chunks, to look like a real model typing.
    pub chunk_delay_ms: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            api_key: "sim-key".into(),
            aws_access_key_id: "AKIASIMULATOR".into(),
            chunk_delay_ms: 0,
        }
    }
}

/// Shared simulator state.
pub struct Simulator {
    config: SimulatorConfig,
    catalog: Arc<CatalogHandle>,
    faults: faults::FaultTable,
    recorder: recorder::Recorder,
    tokens: tokens::TokenCounter,
    /// Anthropic's prompt cache.
    prompt_cache: prompt_cache::PromptCache,
    /// Stripe's stand-in (card deposits).
    pub stripe: stripe::Stripe,
}

impl Simulator {
    /// A simulator serving the models of `catalog`.
    pub fn new(config: SimulatorConfig, catalog: Arc<CatalogHandle>) -> Arc<Self> {
        Arc::new(Simulator {
            config,
            catalog,
            faults: Default::default(),
            recorder: Default::default(),
            tokens: Default::default(),
            prompt_cache: Default::default(),
            stripe: Default::default(),
        })
    }

    /// The pause between stream chunks when no fault overrides it.
    fn chunk_delay(&self) -> Duration {
        Duration::from_millis(self.config.chunk_delay_ms)
    }

    /// The catalog entry of the model `provider` serves as `model`, if any.
    fn model(&self, provider: ProviderId, model: &str) -> Option<Arc<catalog::Model>> {
        let catalog = self.catalog.snapshot();
        let found = catalog
            .models()
            .iter()
            .find(|m| m.provider == provider && m.provider_model_id == model);
        found.cloned()
    }
}

/// The simulator's HTTP routes, to serve alone or nest under a prefix.
pub fn router(sim: Arc<Simulator>) -> Router {
    guarded_router(sim, None)
}

/// Who may use the simulator's controls (`/_sim/faults`, `/_sim/requests`:
/// they break providers for everyone and show every prompt). The simulator
/// alone leaves them open for tests on one machine; `modelrouter up`, where
/// anyone may sign up, allows only the deployment's operators.
pub trait ControlAccess: Send + Sync {
    /// `OK` to go on; `UNAUTHORIZED` or `FORBIDDEN` to refuse.
    fn check<'a>(
        &'a self,
        headers: &'a axum::http::HeaderMap,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::http::StatusCode> + Send + 'a>>;
}

/// The simulator's routes, its controls behind `access` when given.
pub fn guarded_router(sim: Arc<Simulator>, access: Option<Arc<dyn ControlAccess>>) -> Router {
    let mut controls = Router::new()
        .route(
            "/_sim/faults",
            get(faults::list).post(faults::set).delete(faults::clear),
        )
        .route(
            "/_sim/requests",
            get(recorder::list).delete(recorder::clear),
        )
        .merge(stripe::controls());
    if let Some(access) = access {
        controls = controls.route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let access = Arc::clone(&access);
                async move {
                    match access.check(request.headers()).await {
                        axum::http::StatusCode::OK => next.run(request).await,
                        refused => {
                            use axum::response::IntoResponse;
                            let message = "The simulator's controls need an operator's admin key: Authorization: Bearer mr_ak_…";
                            (refused, axum::Json(serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "operator_required"}}))).into_response()
                        }
                    }
                }
            },
        ));
    }
    let mut router = controls
        .merge(stripe::routes())
        .with_state(Arc::clone(&sim));
    router = router
        .route(
            &format!("{}/v1/messages", anthropic_messages::PREFIX),
            post(anthropic_messages::handle),
        )
        .route(
            &format!("{}/{{version}}/models/{{target}}", google_gemini::PREFIX),
            post(google_gemini::handle),
        )
        .route("/openai/v1/embeddings", post(embeddings::openai))
        .route(
            &format!("{}/model/{{model}}/{{method}}", bedrock_converse::PREFIX),
            post(bedrock_converse::handle),
        );
    for dialect in DIALECTS {
        router = router
            .route(
                &format!("{}/chat/completions", dialect.prefix()),
                post(openai_chat::handle).with_state((Arc::clone(&sim), dialect)),
            )
            .route(
                &format!("{}/models", dialect.prefix()),
                get(openai_chat::list_models).with_state((Arc::clone(&sim), dialect)),
            );
    }
    router
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(sim)
}
