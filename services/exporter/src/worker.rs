//! One task per destination drains its backlog: the oldest batch, as spans,
//! through its own client; deleted once the backend took it. Failures back
//! off exponentially (with jitter) for that destination alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::{AccountId, Envelope, Sampling, TelemetryDestinationSet};
use store::Store;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::client::{Client, ExportFailure, Target};
use crate::outbox::{self, Outcome};
use crate::{ExporterConfig, Metrics, Sealer};

/// A destination as the follower routes to it.
#[derive(Clone)]
pub struct Route {
    pub destination: Uuid,
    pub sampling: Sampling,
    /// Its spans carry the request's text.
    pub capture_content: bool,
    /// Its worker's wake-up.
    pub notify: Arc<Notify>,
    /// Its backlog size.
    pub backlog: Arc<AtomicI64>,
}

struct Running {
    account: AccountId,
    route: Route,
    task: AbortHandle,
}

/// The running workers, by destination, and each account's destinations
/// (looked up for every usage event the follower reads).
#[derive(Default)]
struct Table {
    by_id: HashMap<Uuid, Running>,
    by_account: HashMap<AccountId, Vec<Uuid>>,
}

impl Table {
    fn insert(&mut self, id: Uuid, running: Running) {
        let ids = self.by_account.entry(running.account).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        self.by_id.insert(id, running);
    }

    fn remove(&mut self, id: &Uuid) -> Option<Running> {
        let running = self.by_id.remove(id)?;
        if let Some(ids) = self.by_account.get_mut(&running.account) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_account.remove(&running.account);
            }
        }
        Some(running)
    }
}

/// Every destination's worker.
pub struct Workers {
    config: ExporterConfig,
    sealer: Arc<Sealer>,
    store: Store,
    metrics: Arc<Metrics>,
    /// The HTTP client every destination shares.
    http: reqwest::Client,
    running: Mutex<Table>,
}

impl Workers {
    pub fn new(
        config: ExporterConfig,
        sealer: Arc<Sealer>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Workers, crate::ExporterError> {
        let http = crate::client::http(config.timeout()).map_err(crate::ExporterError::Config)?;
        Ok(Workers {
            http,
            config,
            sealer,
            store,
            metrics,
            running: Mutex::new(Table::default()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Table> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts (or restarts, with its new settings) `d`'s worker; its
    /// backlog carries over.
    pub fn start(&self, d: TelemetryDestinationSet) {
        let mut running = self.running();
        let backlog = match running.remove(&d.destination) {
            Some(old) => {
                old.task.abort();
                old.route.backlog
            }
            None => Arc::new(AtomicI64::new(0)),
        };
        let route = Route {
            destination: d.destination,
            sampling: d.sampling,
            capture_content: d.capture_content,
            notify: Arc::new(Notify::new()),
            backlog,
        };
        let worker = Worker {
            http: self.http.clone(),
            config: self.config.clone(),
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            route: route.clone(),
        };
        let target = self.sealer.open(&d.headers_sealed).map(|headers| Target {
            protocol: d.protocol,
            endpoint: d.endpoint.clone(),
            headers,
        });
        let task = tokio::spawn(worker.run(target.map_err(|e| e.to_string()))).abort_handle();
        running.insert(
            d.destination,
            Running {
                account: d.account,
                route,
                task,
            },
        );
        self.metrics
            .destinations
            .store(running.by_id.len() as i64, Relaxed);
    }

    /// Stops `destination`'s worker (its backlog is already deleted).
    pub fn stop(&self, destination: Uuid) {
        let mut running = self.running();
        if let Some(old) = running.remove(&destination) {
            old.task.abort();
            self.metrics
                .backlog
                .fetch_sub(old.route.backlog.load(Relaxed), Relaxed);
        }
        self.metrics
            .destinations
            .store(running.by_id.len() as i64, Relaxed);
    }

    /// Counts `n` rows found in `destination`'s backlog at start.
    pub fn add_backlog(&self, destination: Uuid, n: i64) {
        if let Some(r) = self.running().by_id.get(&destination) {
            r.route.backlog.fetch_add(n, Relaxed);
            self.metrics.backlog.fetch_add(n, Relaxed);
            r.route.notify.notify_one();
        }
    }

    /// Whether no destination runs.
    pub fn is_empty(&self) -> bool {
        self.running().by_id.is_empty()
    }

    /// The exporter's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The route of a running destination.
    pub fn route(&self, destination: Uuid) -> Option<Route> {
        self.running()
            .by_id
            .get(&destination)
            .map(|r| r.route.clone())
    }

    /// The destinations of `account`.
    pub fn routes(&self, account: AccountId) -> Vec<Route> {
        let table = self.running();
        let Some(ids) = table.by_account.get(&account) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| table.by_id.get(id))
            .map(|r| r.route.clone())
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for r in self.running().by_id.values() {
            r.task.abort();
        }
    }
}

struct Worker {
    http: reqwest::Client,
    config: ExporterConfig,
    store: Store,
    metrics: Arc<Metrics>,
    route: Route,
}

impl Worker {
    async fn run(self, target: Result<Target, String>) {
        let id = self.route.destination;
        let client = target.and_then(|t| Client::new(&t, self.config.timeout(), &self.http));
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(destination = %id, error = %e, "destination cannot be delivered to; its backlog waits for a change");
                self.note(Outcome::Failed(&e)).await;
                return;
            }
        };
        let mut backoff = self.backoff_min();
        loop {
            match self.once(&client).await {
                Ok(true) => backoff = self.backoff_min(),
                Ok(false) => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), self.route.notify.notified())
                            .await;
                }
                Err(e) => {
                    self.metrics.retries.fetch_add(1, Relaxed);
                    tracing::debug!(destination = %id, error = %e, wait_ms = backoff.as_millis() as u64, "export failed; retrying");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(self.config.backoff_max_ms));
                }
            }
        }
    }

    fn backoff_min(&self) -> Duration {
        Duration::from_millis(self.config.backoff_min_ms)
    }

    /// Sends the oldest batch: `Ok(true)` when one went (or was refused
    /// and dropped), `Ok(false)` when the backlog is empty, `Err` when it
    /// must be tried again later.
    async fn once(&self, client: &Client) -> Result<bool, String> {
        let id = self.route.destination;
        let pending = outbox::oldest(&self.store, id, self.config.batch)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = pending.last().map(|p| p.id) else {
            return Ok(false);
        };
        let mut spans = Vec::new();
        for p in &pending {
            match Envelope::decode(p.event.as_bytes()) {
                Ok(envelope) => {
                    let content = p
                        .content
                        .as_deref()
                        .and_then(|c| serde_json::from_str(c).ok());
                    spans.extend(crate::spans::with_content(&envelope, content.as_ref()));
                }
                Err(e) => {
                    tracing::error!(destination = %id, error = %e, "an unreadable backlog row is skipped")
                }
            }
        }
        let n = spans.len() as u64;
        let failure = if spans.is_empty() {
            None
        } else {
            client.export(spans).await.err()
        };
        if let Some(ExportFailure::Retry(message)) = &failure {
            self.note(Outcome::Failed(message)).await;
            return Err(message.clone());
        }
        let taken = outbox::take(&self.store, id, last)
            .await
            .map_err(|e| e.to_string())? as i64;
        self.route.backlog.fetch_sub(taken, Relaxed);
        self.metrics.backlog.fetch_sub(taken, Relaxed);
        match &failure {
            Some(rejected) => {
                self.metrics.rejected.fetch_add(n, Relaxed);
                tracing::warn!(destination = %id, error = rejected.message(), spans = n, "backend refused spans; dropped");
                self.note(Outcome::Rejected(pending.len() as i64, rejected.message()))
                    .await;
            }
            None => {
                self.metrics.exported.fetch_add(n, Relaxed);
                self.note(Outcome::Exported(pending.len() as i64)).await;
            }
        }
        Ok(true)
    }

    async fn note(&self, outcome: Outcome<'_>) {
        if let Err(e) = outbox::record(&self.store, self.route.destination, outcome).await {
            tracing::warn!(destination = %self.route.destination, error = %e, "delivery status not saved");
        }
    }
}

/// `d` ± 20%, so destinations that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0);
    d.mul_f64(factor)
}
