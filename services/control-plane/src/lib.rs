//! The control plane: sign-up and login, members and invitations, API keys,
//! provider blocks and daily limits, as askama-rendered pages (from
//! `web-templates/`) and a JSON admin API with the same operations.
//!
//! Every change is an event on the log (see [`ops`]); the [`projector`]
//! folds them into this service's tables and into the `keys` and `policies`
//! buckets that every gateway follows. Balances, spend and requests come
//! from the ledger's projection in the same store.

pub mod alerts;
pub mod analytics;
pub mod api;
pub mod billing;
mod chart;
pub mod config;
pub mod error;
mod extract;
mod input;
mod limiter;
mod lookup;
pub mod operator;
pub mod ops;
pub mod pages;
pub mod passwords;
pub mod projector;
mod proxies;
mod queries;
pub mod request_log;
pub mod session;
pub mod telemetry;
mod view;

use std::sync::Arc;

use auth::KeyHasher;
use axum::Router;
use catalog::{CatalogHandle, ProviderId};
use eventlog::EventLog;
use money::Money;
use store::Store;

pub use config::ControlPlaneConfig;
pub use error::CpError;

/// A user's input as a message repeats it: at most 200 characters.
pub fn echo(input: &str) -> String {
    events::cap(input, 200)
}

/// The prefix of admin-API keys (API keys start with `mr_sk_`).
pub const ADMIN_KEY_PREFIX: &str = "mr_ak_";

/// The state of each model's circuit breaker, where the control plane runs
/// beside a gateway (`modelrouter up`).
pub trait Circuits: Send + Sync {
    /// The breaker state of `model`.
    fn state(&self, provider: ProviderId, model: &str) -> events::CircuitState;
    /// The latest breaker openings, newest first: (when, model id or
    /// `provider {name}`).
    fn incidents(&self) -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
        Vec::new()
    }
}

/// The secrets shared with the gateways (key hash) and kept to itself (sessions).
pub struct Secrets {
    /// Keys are stored as HMAC-SHA256 under this.
    pub key_hash: Vec<u8>,
    /// Session tokens are signed with this.
    pub session: Vec<u8>,
    /// Trace destinations' headers are sealed under this (shared with the
    /// exporter); `None`: destinations cannot be configured.
    pub telemetry: Option<Vec<u8>>,
}

/// Everything a control-plane request needs.
pub struct ControlPlane {
    log: Arc<dyn EventLog>,
    store: Store,
    projector: Arc<projector::Projector>,
    keys: KeyHasher,
    sessions: session::Sessions,
    passwords: passwords::Passwords,
    limiter: limiter::AttemptLimiter,
    logins: ops::LoginBackoff,
    proxies: proxies::TrustedProxies,
    catalog: Arc<CatalogHandle>,
    circuits: Option<Arc<dyn Circuits>>,
    demo_credits: Option<Money>,
    invitation_ttl_s: u64,
    /// Operators' emails from the configuration (lowercase).
    operators: Vec<String>,
    /// Card payments; `None` when not configured.
    payments: Option<billing::Payments>,
    /// Seals trace destinations' headers; `None` without a telemetry secret.
    sealer: Option<Arc<exporter::Sealer>>,
    /// Where alert email goes out (`smtp_url`, `alert_from`).
    mail: alerts::deliver::Mail,
}

impl ControlPlane {
    /// The credits every new account is granted, when any (simulator mode).
    pub fn demo_credits(&self) -> Option<Money> {
        self.demo_credits
    }

    /// A control plane on `log` and `store` (migrated), its projector
    /// following the log in the background.
    pub async fn start(
        config: ControlPlaneConfig,
        secrets: Secrets,
        log: Arc<dyn EventLog>,
        store: Store,
        catalog: Arc<CatalogHandle>,
        circuits: Option<Arc<dyn Circuits>>,
        payments: Option<billing::Payments>,
    ) -> Result<Arc<ControlPlane>, CpError> {
        let keys = KeyHasher::new(&secrets.key_hash)
            .map_err(|e| CpError::Internal(format!("key-hash secret: {e}")))?;
        if secrets.session.len() < 32 {
            return Err(CpError::Internal(
                "the session secret must be at least 32 bytes".into(),
            ));
        }
        let demo_credits = match &config.demo_credits {
            Some(text) => Some(text.parse::<Money>().map_err(|e| {
                CpError::Internal(format!("control_plane.demo_credits `{text}`: {e}"))
            })?),
            None => None,
        }
        .filter(|amount| *amount > Money::ZERO);
        let proxies = proxies::TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|e| CpError::Internal(format!("control_plane.trusted_proxies: {e}")))?;
        let sealer = match &secrets.telemetry {
            Some(secret) => Some(Arc::new(
                exporter::Sealer::new(secret).map_err(|e| CpError::Internal(e.to_string()))?,
            )),
            None => None,
        };
        let projector = Arc::new(projector::Projector::new(log.as_ref(), store.clone()).await?);
        tokio::spawn(Arc::clone(&projector).run(Arc::clone(&log), std::future::pending()));
        let cp = Arc::new(ControlPlane {
            mail: alerts::deliver::Mail {
                smtp_url: config.smtp_url.clone(),
                from: config.alert_from.clone(),
            },
            sessions: session::Sessions::new(
                &secrets.session,
                config.session_ttl_s,
                config.secure_cookies,
            ),
            passwords: passwords::Passwords::new(
                config.argon2_memory_kib,
                config.argon2_iterations,
                config.argon2_parallelism,
            )?,
            limiter: limiter::AttemptLimiter::new(config.auth_attempts_per_minute),
            logins: ops::LoginBackoff::default(),
            proxies,
            invitation_ttl_s: config.invitation_ttl_s,
            operators: config
                .operators
                .iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
            payments,
            sealer,
            log,
            store,
            projector,
            keys,
            catalog,
            circuits,
            demo_credits,
        });
        tokio::spawn(alerts::watch::run(Arc::clone(&cp)));
        tokio::spawn(alerts::deliver::run(Arc::clone(&cp)));
        Ok(cp)
    }
}

/// The dashboard's pages and the JSON admin API.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    pages::routes()
        .merge(api::routes())
        .merge(telemetry::routes())
        .merge(request_log::api::routes())
        .merge(lookup::routes())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&cp),
            extract::cookies,
        ))
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(cp)
}
