//! The gateway: Model Router's data plane.
//!
//! One OpenAI-compatible endpoint. A request names a tier (`economy`,
//! `standard`, `premium`) and a `prefer`, or pins a model; the gateway picks
//! candidates from the catalog (see [`routing`]), guards context windows
//! (see [`guard`]), tries the candidates in order through provider adapters
//! (see [`providers`]) and answers in OpenAI's shapes with routing headers.
//! `/v1/embeddings` routes the `embed-*` aliases the same way (see [`embeddings`]).
//! Anthropic's `/v1/messages` and OpenAI's `/v1/responses` are translated to
//! chat and go through the same [`dispatch`] (see [`ingress`]).

pub mod accounts;
pub mod attribution;
pub mod auto;
pub mod config;
pub mod dispatch;
pub mod embeddings;
pub mod error;
pub mod files;
pub mod follow;
pub mod guard;
mod handlers;
pub mod headers;
pub mod health;
pub mod ingress;
pub mod key_limits;
pub mod keys;
pub mod policies;
pub mod prefer;
pub mod probes;
pub mod providers;
pub mod routing;
pub mod server;
pub mod sse;
pub mod usage;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use catalog::CatalogHandle;
use tower::ServiceBuilder;
use tower_http::request_id::{self, MakeRequestId, PropagateRequestIdLayer, SetRequestIdLayer};

pub use config::{GatewayConfig, ProviderSettings};
pub use error::GatewayError;
pub use keys::KeyRing;
pub use providers::Registry;

/// Everything a request handler needs, shared by all requests.
pub struct Gateway {
    /// Settings.
    pub config: GatewayConfig,
    /// The live catalog.
    pub catalog: Arc<CatalogHandle>,
    /// The live model of `model: "auto"`.
    pub auto_model: Arc<auto::ModelHandle>,
    /// Configured provider adapters.
    pub providers: Registry,
    /// Accepted API keys.
    pub keys: Arc<KeyRing>,
    /// Each key's requests and tokens of the last minute (its own limits).
    pub key_meter: Arc<key_limits::KeyMeter>,
    /// Providers each account blocked.
    pub policies: Arc<policies::Policies>,
    /// Token counting for the guard.
    pub tokens: tokens::TokenCounter,
    /// Breakers, cool-downs and observed speed per model and provider.
    pub health: health::Health,
    /// Usage publishing and account enforcement; `None` runs without a
    /// ledger (no billing, nothing refused for credit).
    pub events: Option<Events>,
    /// Requests' provider work, which runs detached from the client's
    /// connection (see [`Gateway::detached`]); a shutdown waits for it.
    pub inflight: tokio_util::task::TaskTracker,
    /// Memory for request bodies in flight, in KiB (see `body_memory_bytes`).
    body_memory: Arc<tokio::sync::Semaphore>,
    /// Metrics of what runs in this process beside the gateway (the
    /// embedded ledger), appended to `/metrics`; set once, at start.
    pub metrics_beside: std::sync::OnceLock<MetricsBeside>,
}

/// Renders another component's metrics in Prometheus' text format.
pub type MetricsBeside = Arc<dyn Fn() -> String + Send + Sync>;

/// The gateway's link to the event backbone.
#[derive(Clone)]
pub struct Events {
    /// Publishes usage events.
    pub publisher: Arc<usage::Publisher>,
    /// The ledger's account states plus this gateway's unapplied spend.
    pub accounts: Arc<accounts::Accounts>,
}

impl Gateway {
    /// A gateway that records usage and enforces credit through `events`.
    pub fn with_events(
        config: GatewayConfig,
        catalog: Arc<CatalogHandle>,
        keys: Arc<KeyRing>,
        events: Option<Events>,
    ) -> Result<Arc<Self>, providers::ConfigError> {
        let providers = Registry::from_config(&config)?;
        let tokens = tokens::TokenCounter::default();
        if config.preload_tokenizer {
            tokens.warm_up();
        }
        let health = health::Health::new(config.breaker.clone(), config.latency.clone());
        let config_body_memory = config.body_memory_bytes;
        config.auto.check()?;
        let auto_model = auto::ModelHandle::open(config.auto.model.clone())?;
        Ok(Arc::new(Gateway {
            auto_model,
            health,
            config,
            catalog,
            providers,
            keys,
            key_meter: Arc::default(),
            policies: Arc::default(),
            tokens,
            events,
            inflight: tokio_util::task::TaskTracker::new(),
            body_memory: Arc::new(tokio::sync::Semaphore::new(
                (config_body_memory / 1024).max(1),
            )),
            metrics_beside: std::sync::OnceLock::new(),
        }))
    }

    /// What `model: "auto"` decides for `request`, and why.
    pub fn decide_auto(&self, request: &openai::ChatRequest) -> auto::Explanation {
        auto::decide(request, &self.auto_model.snapshot(), &self.config.auto)
    }

    /// Takes `bytes` of the memory for request bodies, or refuses (503).
    pub fn body_memory(
        &self,
        bytes: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, GatewayError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.body_memory)
            .try_acquire_many_owned(kib)
            .map_err(|_| GatewayError::Busy)
    }

    /// What `caller` may use now (everything when there is no ledger).
    pub fn allowance(&self, caller: &keys::Caller) -> Result<accounts::Allowance, GatewayError> {
        let Some(events) = &self.events else {
            return Ok(accounts::Allowance { paid: true });
        };
        let now = chrono::Utc::now();
        if let Some(budget) = &caller.limits.budget {
            events
                .accounts
                .check_budget(caller.account, &caller.key, budget, now)?;
        }
        events.accounts.allowance(caller.account, now)
    }

    /// Counts one request of an account without credit against the
    /// free-use rate limit.
    pub fn admit_free(&self, caller: &keys::Caller) -> Result<(), GatewayError> {
        match &self.events {
            Some(events) => events.accounts.admit_free(caller.account),
            None => Ok(()),
        }
    }

    /// The usage recorder of one request whose first provider attempt is
    /// about to start (it takes the request's origin number now), when usage
    /// is recorded; `routing` (the tier and `auto`'s decision) is only
    /// worked out then.
    pub fn recording(
        &self,
        caller: &keys::Caller,
        request_id: &RequestId,
        kind: ::events::RequestKind,
        attribution: attribution::Attribution,
        routing: impl FnOnce() -> (
            Option<String>,
            Option<::events::AutoDecision>,
            Option<prefer::Prefer>,
        ),
    ) -> Option<Arc<usage::Recording>> {
        let events = self.events.as_ref()?;
        let (tier, auto, prefer) = routing();
        Some(usage::Recording::start(
            Arc::clone(&events.publisher),
            Arc::clone(&events.accounts),
            Arc::clone(&self.key_meter),
            usage::Routed {
                caller: caller.clone(),
                request_id: request_id.0.clone(),
                started: request_id.1,
                kind,
                tier,
                auto,
                prefer: prefer.map(prefer::Prefer::as_str),
                attribution,
            },
        ))
    }

    /// Runs a request's provider work detached from the client's
    /// connection and waits for it. A client that hangs up drops this
    /// future, not the work: the provider call (which the platform pays for)
    /// runs to its end, bounded by the request's deadline, and is billed;
    /// `recording` learns the client left. Shutdown waits for such work.
    pub async fn detached<T: Send + 'static>(
        &self,
        recording: Option<&Arc<usage::Recording>>,
        work: impl std::future::Future<Output = Result<T, GatewayError>> + Send + 'static,
    ) -> Result<T, GatewayError> {
        let guard = recording.map(|r| r.client().guard());
        // The detached work logs in the request's span, as the handler does.
        let work = tracing::Instrument::in_current_span(work);
        let result = match self.inflight.spawn(work).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "a request's provider work failed");
                Err(GatewayError::Internal("the provider work stopped".into()))
            }
        };
        if let Some(guard) = guard {
            guard.disarm();
        }
        result
    }

    /// Waits (at most `within`) for detached provider work to finish, so
    /// its usage is recorded before the process exits.
    pub async fn drain(&self, within: std::time::Duration) {
        self.inflight.close();
        if tokio::time::timeout(within, self.inflight.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                requests = self.inflight.len(),
                "shutting down with provider calls still running; their numbers will show as gaps"
            );
        }
    }
}

/// The request's `X-Request-Id` (given by the request-id layer) and when
/// its handler started. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct RequestId(pub String, pub std::time::Instant);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let id = parts
            .extensions
            .get::<tower_http::request_id::RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .map_or_else(new_request_id, str::to_owned);
        Ok(RequestId(id, std::time::Instant::now()))
    }
}

/// A new request id: `req_` and 32 hex digits, a UUIDv7, so the request
/// log's index by request id grows at one end (its last 7 bytes are random,
/// as a W3C trace id made from it should be).
pub(crate) fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

/// Makes the `X-Request-Id` of every request: ours, never the client's.
#[derive(Clone, Copy)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<request_id::RequestId> {
        HeaderValue::from_str(&new_request_id())
            .ok()
            .map(request_id::RequestId::new)
    }
}

/// The public API routes.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.config.body_limit_bytes;
    Router::new()
        .route("/v1/chat/completions", post(handlers::chat::completions))
        .route("/v1/embeddings", post(handlers::embeddings::create))
        .route("/v1/messages", post(handlers::messages::create))
        .route(
            "/v1/messages/count_tokens",
            post(handlers::messages::count_tokens),
        )
        .route("/v1/responses", post(handlers::responses::create))
        .route("/v1/models", get(handlers::models::list))
        .route("/v1/models/{id}", get(handlers::models::retrieve))
        .route("/v1/router/health", get(handlers::health::report))
        .route(
            "/v1/router/explain",
            post(handlers::chat::explain).get(handlers::chat::explain),
        )
        .route("/metrics", get(handlers::health::metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(DefaultBodyLimit::max(limit))
        .layer(
            // The server loop gives every request our id and its span (see
            // `server`); these put the id in the request's extensions (making
            // one if the router is served some other way) and answer with it.
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeId))
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(gateway)
}

async fn unknown_route(request: Request) -> Response {
    GatewayError::UnknownRoute(format!("{} {}", request.method(), request.uri().path()))
        .into_response()
}
