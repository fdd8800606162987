//! The exporter: every request as an OpenTelemetry GenAI trace in each
//! tenant's own OTLP backends.
//!
//! ```text
//! event log ──(durable consumer "exporter")──► follow ──► export_outbox (one backlog per destination)
//!                                                             │
//!                                     one worker per destination: batch → OTLP → delete
//! ```
//! - [`follow`] reads the log once, in order: destination events change the
//!   set of destinations, usage events of an account with destinations are
//!   sampled and added to each destination's backlog; the records are
//!   acked only after that transaction commits.
//! - [`worker`] drains one destination's backlog in batches through its
//!   [`client::Client`] (`opentelemetry-otlp`), deletes what the backend
//!   took, retries with exponential backoff what it could not take now,
//!   drops what it refused, and never waits on another destination.
//!
//! Delivery is at least once: a batch the backend took just before the
//! exporter died is sent again (at most one batch per destination); its
//! spans carry the same trace and span ids, so backends that dedupe on
//! them show it once.

pub mod client;
pub mod destination;
mod follow;
pub mod metrics;
pub mod outbox;
pub mod preset;
pub mod seal;
pub mod spans;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use eventlog::EventLog;
use serde::Deserialize;
use store::Store;

pub use metrics::Metrics;
pub use seal::Sealer;

/// A user's input as a message repeats it: at most 200 characters.
pub(crate) fn echo(input: &str) -> String {
    events::cap(input, 200)
}

/// Why the exporter failed.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// A setting is wrong; the message says which.
    #[error("exporter configuration: {0}")]
    Config(String),
    /// A sealed value does not open under this deployment's secret.
    #[error("sealed headers cannot be opened: another telemetry secret, or altered")]
    Sealed,
    #[error(transparent)]
    Log(#[from] eventlog::LogError),
    #[error("exporter store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("exporter store: {0}")]
    Migrate(#[from] store::StoreError),
}

/// Exporter settings (`[exporter]`); every field has a default (README).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExporterConfig {
    /// Requests per export call (each is 1 + attempts spans; default 200).
    pub batch: usize,
    /// The most undelivered requests a destination keeps; beyond it the
    /// oldest are dropped and counted (default 100,000).
    pub max_backlog: usize,
    /// How long one export may take, in ms (default 10,000).
    pub timeout_ms: u64,
    /// First wait after a failed export, in ms; doubles per failure (default 500).
    pub backoff_min_ms: u64,
    /// The longest wait between retries, in ms (default 30,000).
    pub backoff_max_ms: u64,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            batch: 200,
            max_backlog: 100_000,
            timeout_ms: 10_000,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

impl ExporterConfig {
    /// The export timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn check(&self) -> Result<(), ExporterError> {
        let bad = |m: &str| Err(ExporterError::Config(m.into()));
        if self.batch == 0 || self.batch > 10_000 {
            return bad("exporter.batch must be 1 to 10,000");
        }
        if self.max_backlog == 0 {
            return bad("exporter.max_backlog must be at least 1");
        }
        if self.timeout_ms == 0
            || self.backoff_min_ms == 0
            || self.backoff_max_ms < self.backoff_min_ms
        {
            return bad("exporter.timeout_ms and backoff_min_ms must be positive, backoff_max_ms at least backoff_min_ms");
        }
        Ok(())
    }
}

/// The OpenTelemetry SDK adds these variables' headers to every export it
/// makes: an operator's own collector token would go to every tenant.
const LEAKING_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
];

/// A running exporter.
pub struct Exporter {
    store: Store,
    metrics: Arc<Metrics>,
}

impl Exporter {
    /// Starts following `log` into `store` (migrated here) and delivering,
    /// until `stop`.
    pub async fn start(
        config: ExporterConfig,
        sealer: Arc<Sealer>,
        log: Arc<dyn EventLog>,
        store: Store,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<Exporter>, ExporterError> {
        config.check()?;
        if let Some(name) = LEAKING_VARIABLES
            .iter()
            .find(|v| std::env::var_os(v).is_some())
        {
            return Err(ExporterError::Config(format!(
                "{name} is set: the OpenTelemetry SDK would send its headers to every tenant's backend; unset it for the exporter"
            )));
        }
        store.migrate().await?;
        let metrics = Arc::new(Metrics::default());
        let workers =
            worker::Workers::new(config.clone(), sealer, store.clone(), Arc::clone(&metrics))?;
        for d in outbox::destinations(&store).await? {
            workers.start(d);
        }
        for (destination, n) in outbox::backlogs(&store).await? {
            workers.add_backlog(destination, n);
        }
        let follower = follow::Follower::new(config, store.clone(), workers);
        tokio::spawn(follower.run(log, stop));
        Ok(Arc::new(Exporter { store, metrics }))
    }

    /// The exporter's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The exporter's counters in Prometheus text format.
    pub fn to_prometheus(&self) -> String {
        self.metrics.to_prometheus()
    }

    /// Ready: following the log, and the store answers.
    pub async fn ready(&self) -> Result<(), String> {
        if !self.metrics.following() {
            return Err("not following the event log".into());
        }
        sqlx::query("SELECT 1")
            .execute(&self.store.pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
