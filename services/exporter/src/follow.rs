//! Reads the event log once, in order, into the destinations' backlogs.
//!
//! Records are gathered for up to [`LINGER`] (or [`GATHER`] records), then
//! applied in one store transaction: destination changes first-come, and
//! each usage event of an account with destinations added to the backlog of
//! every destination that samples it. Only after the commit are the records
//! acked, so a crash anywhere leaves them to be read again (a usage event
//! read twice is two backlog rows with the same span ids: at least once).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use eventlog::{Delivery, EventLog};
use events::{Envelope, Event, Outcome, Sampling, UsageRecorded};
use store::Store;
use uuid::Uuid;

use crate::worker::{Route, Workers};
use crate::{outbox, ExporterConfig, ExporterError};

/// The exporter's durable consumer.
pub const CONSUMER: &str = "exporter";
/// The most records applied in one transaction …
const GATHER: usize = 512;
/// … and the longest a record waits for others to join it.
const LINGER: Duration = Duration::from_millis(20);

pub struct Follower {
    config: ExporterConfig,
    store: Store,
    workers: Arc<Workers>,
    /// Requests' text awaiting their usage event.
    texts: tokio::sync::Mutex<Texts>,
    pruned: tokio::sync::Mutex<tokio::time::Instant>,
}

/// How often old sightings are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A usage event to queue: its id, its JSON, its text (when a route
/// captures it) and the routes that sample it.
struct Queued {
    id: Uuid,
    json: String,
    text: Option<String>,
    routes: Vec<Route>,
}

/// The most requests' text held while their usage events are awaited.
const TEXTS_HELD: usize = 10_000;

/// Requests' text (`content_recorded`, which a gateway publishes just
/// before the usage event) until their usage event comes: bounded, the
/// oldest forgotten first. Not kept across restarts: text read before an
/// exporter restart whose usage event comes after it is not attached.
#[derive(Default)]
struct Texts {
    by_request: std::collections::HashMap<String, String>,
    order: std::collections::VecDeque<String>,
}

impl Texts {
    fn keep(&mut self, content: &events::ContentRecorded) {
        let Ok(json) = serde_json::to_string(content) else {
            return;
        };
        if self
            .by_request
            .insert(content.request_id.clone(), json)
            .is_none()
        {
            self.order.push_back(content.request_id.clone());
        }
        while self.order.len() > TEXTS_HELD {
            if let Some(old) = self.order.pop_front() {
                self.by_request.remove(&old);
            }
        }
    }

    fn take(&mut self, request_id: &str) -> Option<String> {
        self.by_request.remove(request_id)
    }
}

/// The batch's transaction, begun now if it has not been.
async fn begun<'t>(
    tx: &'t mut Option<sqlx::Transaction<'static, sqlx::Any>>,
    store: &Store,
) -> Result<&'t mut sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    match tx {
        Some(tx) => Ok(tx),
        None => Ok(tx.insert(store.pool.begin().await?)),
    }
}

/// A destination change read from the log, applied after the transaction.
enum Change {
    Start(events::TelemetryDestinationSet),
    Stop(Uuid),
}

impl Follower {
    pub fn new(config: ExporterConfig, store: Store, workers: Workers) -> Follower {
        Follower {
            config,
            store,
            workers: Arc::new(workers),
            texts: tokio::sync::Mutex::new(Texts::default()),
            pruned: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Follows `log` until `stop`, reopening the consumer after a failure
    /// (it starts again at the first record not acked).
    pub async fn run(self, log: Arc<dyn EventLog>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let metrics = self.workers.metrics();
        loop {
            let opened = tokio::select! {
                _ = &mut stop => break,
                c = log.consumer(CONSUMER) => c,
            };
            let result = match opened {
                Ok(mut consumer) => {
                    metrics.set_following(true);
                    tokio::select! {
                        _ = &mut stop => break,
                        r = self.follow(consumer.as_mut()) => r,
                    }
                }
                Err(e) => Err(e.into()),
            };
            metrics.set_following(false);
            if let Err(e) = result {
                tracing::warn!(error = %e, "exporter stopped following the event log; reopening");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        metrics.set_following(false);
    }

    async fn follow(&self, consumer: &mut dyn eventlog::Consumer) -> Result<(), ExporterError> {
        loop {
            let Some(first) = consumer.next(Duration::from_secs(1)).await? else {
                continue;
            };
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + LINGER;
            while batch.len() < GATHER {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match consumer.next(left).await? {
                    Some(d) => batch.push(d),
                    None => break,
                }
            }
            self.apply(&batch).await?;
            Delivery::ack_all(batch).await?;
            self.prune().await;
        }
    }

    async fn apply(&self, batch: &[Delivery]) -> Result<(), ExporterError> {
        // Begun at the first write: most batches (usage, no destination)
        // write nothing, and an empty transaction is still two trips to the
        // store.
        let mut tx = None;
        let mut changes = Vec::new();
        // Usage events to queue, written after the scan in a few statements:
        // (event id, its JSON, the routes that sample it).
        let mut queued: Vec<Queued> = Vec::new();
        for delivery in batch {
            let subject = delivery.record.subject.as_str();
            if subject != events::subjects::USAGE && subject != events::subjects::ACCESS {
                continue;
            }
            // Usage is most of the log; with no destination at all (most
            // deployments, most of the time) none of it is decoded.
            if subject == events::subjects::USAGE && changes.is_empty() && self.workers.is_empty() {
                continue;
            }
            for decoded in Envelope::decode_all(&delivery.record.payload) {
                let Ok(envelope) = decoded else { continue };
                match &envelope.event {
                    Event::TelemetryDestinationSet(d) => {
                        outbox::save(begun(&mut tx, &self.store).await?, d).await?;
                        changes.push(Change::Start(d.clone()));
                    }
                    Event::TelemetryDestinationRemoved(r) => {
                        let tx = begun(&mut tx, &self.store).await?;
                        let gone = outbox::remove(tx, r.account, r.destination).await?;
                        changes.extend(gone.then_some(Change::Stop(r.destination)));
                    }
                    Event::ContentRecorded(content) => {
                        let wanted = self
                            .routes_of(content.account, &changes)
                            .iter()
                            .any(|r| r.capture_content);
                        if wanted {
                            self.texts.lock().await.keep(content);
                        }
                    }
                    Event::UsageRecorded(usage) => {
                        self.workers.metrics().events_read.fetch_add(1, Relaxed);
                        let routes = self.routes_of(usage.account, &changes);
                        let routes: Vec<Route> = routes
                            .into_iter()
                            .filter(|r| sampled(r.sampling, usage))
                            .collect();
                        if !routes.is_empty() {
                            let json = String::from_utf8_lossy(&envelope.encode()).into_owned();
                            let text = match routes.iter().any(|r| r.capture_content) {
                                true => self.texts.lock().await.take(&usage.request_id),
                                false => None,
                            };
                            queued.push(Queued {
                                id: envelope.id,
                                json,
                                text,
                                routes,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        let woken = match queued.is_empty() {
            true => Vec::new(),
            false => {
                let tx = begun(&mut tx, &self.store).await?;
                self.queue(tx, queued, &changes).await?
            }
        };
        if let Some(tx) = tx {
            tx.commit().await?;
        }
        for change in changes {
            match change {
                Change::Start(d) => self.workers.start(d),
                Change::Stop(id) => self.workers.stop(id),
            }
        }
        self.after_push(woken).await;
        Ok(())
    }

    /// Writes the queued usage events to their destinations' backlogs,
    /// but not replays (an id seen before), nor to a destination removed
    /// later in the batch; the routes written to, once per row.
    async fn queue(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        queued: Vec<Queued>,
        changes: &[Change],
    ) -> Result<Vec<Route>, ExporterError> {
        let ids: Vec<Uuid> = queued.iter().map(|q| q.id).collect();
        let fresh = outbox::first_sightings(tx, &ids).await?;
        let removed: Vec<Uuid> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Stop(id) => Some(*id),
                Change::Start(_) => None,
            })
            .collect();
        let mut rows = Vec::new();
        let mut woken = Vec::new();
        for q in &queued {
            if !fresh.contains(&q.id) {
                continue;
            }
            for route in q
                .routes
                .iter()
                .filter(|r| !removed.contains(&r.destination))
            {
                let text = q.text.as_deref().filter(|_| route.capture_content);
                rows.push((route.destination, q.json.as_str(), text));
                woken.push(route.clone());
            }
        }
        outbox::push_all(tx, &rows).await?;
        Ok(woken)
    }

    /// Forgets sightings older than [`outbox::SEEN_FOR`], once in a while.
    async fn prune(&self) {
        let mut last = self.pruned.lock().await;
        if last.elapsed() < PRUNE_EVERY {
            return;
        }
        *last = tokio::time::Instant::now();
        if let Err(e) = outbox::forget_sightings(&self.store).await {
            tracing::warn!(error = %e, "old sightings not pruned");
        }
    }

    /// The routes of `account`, counting the destination changes earlier
    /// in the same batch (not yet started).
    fn routes_of(&self, account: events::AccountId, changes: &[Change]) -> Vec<Route> {
        let mut routes = self.workers.routes(account);
        for change in changes {
            match change {
                Change::Start(d) if d.account == account => {
                    routes.retain(|r| r.destination != d.destination);
                    routes.push(Route {
                        destination: d.destination,
                        sampling: d.sampling,
                        capture_content: d.capture_content,
                        notify: Arc::default(),
                        backlog: Arc::default(),
                    });
                }
                Change::Stop(id) => routes.retain(|r| r.destination != *id),
                _ => {}
            }
        }
        routes
    }

    /// Counts the new rows, wakes their workers, and trims backlogs over
    /// the cap (oldest first).
    async fn after_push(&self, woken: Vec<Route>) {
        let metrics = self.workers.metrics();
        let mut added: Vec<(Uuid, i64)> = Vec::new();
        for route in woken {
            match added.iter_mut().find(|(id, _)| *id == route.destination) {
                Some((_, n)) => *n += 1,
                None => added.push((route.destination, 1)),
            }
        }
        for (destination, n) in added {
            let Some(live) = self.workers.route(destination) else {
                continue;
            };
            live.backlog.fetch_add(n, Relaxed);
            metrics.backlog.fetch_add(n, Relaxed);
            live.notify.notify_one();
            if live.backlog.load(Relaxed) as usize <= self.config.max_backlog {
                continue;
            }
            match outbox::trim(&self.store, destination, self.config.max_backlog).await {
                Ok(0) => {}
                Ok(dropped) => {
                    live.backlog.fetch_sub(dropped as i64, Relaxed);
                    metrics.backlog.fetch_sub(dropped as i64, Relaxed);
                    metrics.dropped_overflow.fetch_add(dropped, Relaxed);
                    let _ = outbox::record(
                        &self.store,
                        destination,
                        outbox::Outcome::Dropped(dropped as i64),
                    )
                    .await;
                    tracing::warn!(%destination, dropped, "backlog full: oldest requests dropped");
                }
                Err(e) => tracing::warn!(error = %e, "backlog not trimmed"),
            }
        }
    }
}

/// Whether a destination with `sampling` receives this request.
fn sampled(sampling: Sampling, usage: &UsageRecorded) -> bool {
    match sampling {
        Sampling::All => true,
        Sampling::ErrorsOnly => matches!(usage.outcome, Outcome::Failed | Outcome::Interrupted),
        Sampling::Ratio { ratio } => share(&usage.request_id) < ratio,
    }
}

/// Where a request id falls in [0, 1): the first 8 bytes of its SHA-256,
/// so the same request is always in or always out, and ids that differ in
/// one character spread evenly (FNV's high bits did not: 33% kept of 25%).
fn share(request_id: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(request_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn a_ratio_keeps_about_that_share_of_requests() {
        let n = 20_000;
        let kept = (0..n)
            .filter(|i| share(&format!("req_{i:032x}")) < 0.25)
            .count();
        let rate = kept as f64 / n as f64;
        assert!((0.23..0.27).contains(&rate), "{rate}");
        assert_eq!(share("req_a"), share("req_a"));
    }
}
