//! Usage events: one `UsageRecorded` per served request, published off the
//! request path.
//!
//! A request hands its event to [`Publisher::record`], which only queues it.
//! One background task appends queued events to the event log, in order,
//! in batches (gathered for `gateway.usage_linger_ms`, 5 ms by default) of
//! up to 512.
//! When the log does not take an event (down, or slower than
//! `APPEND_TIMEOUT`), that event and every later one go to the [`spool`]
//! file instead (fsync'd), and the task replays the spool, oldest first,
//! until it is empty; only then do new events go to the log directly again,
//! so the log receives them in the order they happened.
//!
//! What can still be lost: events queued in memory when the process is
//! killed outright (a graceful shutdown drains the queue first). The queue
//! holds what arrived in the last append round trip, typically well under
//! a millisecond of traffic.

pub mod spool;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventlog::{EventLog, Outgoing};
use events::{Envelope, Origin};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use spool::Spool;

/// How long one append may take before the event is spooled instead.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a non-empty spool is tried again.
const REPLAY_EVERY: Duration = Duration::from_millis(500);
/// Events taken from the queue per round.
const BATCH: usize = 512;
/// How long a round waits for more events after the first, by default.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

enum Command {
    Publish(Envelope),
    Flush(oneshot::Sender<()>),
}

/// Queues usage events and numbers this gateway's events.
pub struct Publisher {
    queue: mpsc::UnboundedSender<Command>,
    gateway: String,
    next_seq: AtomicU64,
    spooled: Arc<AtomicU64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Publisher {
    /// Starts the publishing task for `log`, spooling to `spool_path`,
    /// gathering each batch for `linger`.
    pub fn start(
        log: Arc<dyn EventLog>,
        spool_path: &Path,
        gateway: String,
        linger: Duration,
    ) -> std::io::Result<Arc<Publisher>> {
        let spool = Spool::open(spool_path)?;
        let spooled = Arc::new(AtomicU64::new(spool.pending()));
        let (queue, commands) = mpsc::unbounded_channel();
        let worker = Worker {
            linger,
            log,
            spool,
            spooled: Arc::clone(&spooled),
        };
        let task = tokio::spawn(worker.run(commands));
        Ok(Arc::new(Publisher {
            queue,
            gateway,
            next_seq: AtomicU64::new(1),
            spooled,
            task: Mutex::new(Some(task)),
        }))
    }

    /// This gateway's id and the next number in its sequence.
    pub fn origin(&self) -> Origin {
        Origin {
            gateway: self.gateway.clone(),
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Queues `envelope`; never waits.
    pub fn record(&self, envelope: Envelope) {
        if self.queue.send(Command::Publish(envelope)).is_err() {
            tracing::error!("usage publisher stopped; an event was not recorded");
        }
    }

    /// Events waiting in the spool for the log to come back.
    pub fn spooled(&self) -> u64 {
        self.spooled.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is in the log or the spool.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Flushes, then stops the task (at shutdown).
    pub async fn shutdown(&self) {
        self.flush().await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

struct Worker {
    linger: Duration,
    log: Arc<dyn EventLog>,
    spool: Spool,
    spooled: Arc<AtomicU64>,
}

impl Worker {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(REPLAY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(first) = command else { return };
                    let mut batch = vec![first];
                    // Linger briefly, then take what came: one append of many
                    // events costs the log and this process far less than many
                    // appends of one, and sleeping (rather than receiving each
                    // event as it comes) spares a task wake-up per request.
                    tokio::time::sleep(self.linger).await;
                    while batch.len() < BATCH {
                        match commands.try_recv() {
                            Ok(command) => batch.push(command),
                            Err(_) => break,
                        }
                    }
                    self.handle(batch).await;
                }
                _ = tick.tick(), if self.spool.pending() > 0 => self.replay().await,
            }
        }
    }

    /// Publishes a batch in order: consecutive events go to the log in one
    /// pipelined append; a flush waits for what came before it.
    async fn handle(&mut self, batch: Vec<Command>) {
        let mut events = Vec::new();
        for command in batch {
            match command {
                Command::Publish(envelope) => events.push(envelope),
                Command::Flush(done) => {
                    self.deliver(std::mem::take(&mut events)).await;
                    let _ = done.send(());
                }
            }
        }
        self.deliver(events).await;
    }

    /// Appends `events` to the log, or spools them (when the spool is not
    /// empty, so order is kept, or when the log does not take them).
    async fn deliver(&mut self, events: Vec<Envelope>) {
        if events.is_empty() {
            return;
        }
        if self.spool.pending() == 0 && self.append(&events).await {
            return;
        }
        let mut lines: Vec<Vec<u8>> = events.iter().map(Envelope::encode).collect();
        self.write_spool(&mut lines);
    }

    /// Whether the log took all of `events` in time. They travel as one
    /// record (a JSON array) whose id derives from theirs, so sending the
    /// same batch again is dropped by the log; a batch cut differently on a
    /// spool replay is a new record, and the ledger drops its events by id.
    async fn append(&self, events: &[Envelope]) -> bool {
        let Some(first) = events.first() else {
            return true;
        };
        let id = batch_id(events).to_string();
        let payload = Envelope::encode_all(events);
        let record = Outgoing {
            subject: first.event.subject(),
            id: &id,
            payload: &payload,
        };
        match tokio::time::timeout(APPEND_TIMEOUT, self.log.append_batch(&[record])).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, events = events.len(), "event log refused usage events; spooling");
                false
            }
            Err(_) => {
                tracing::warn!(
                    events = events.len(),
                    "event log did not answer in time; spooling usage events"
                );
                false
            }
        }
    }

    fn write_spool(&mut self, lines: &mut Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        if let Err(e) = self.spool.append(lines) {
            // Neither the log nor the disk: nothing left to keep them in.
            tracing::error!(error = %e, events = lines.len(), "cannot write the usage spool; events lost");
        }
        lines.clear();
        self.spooled.store(self.spool.pending(), Ordering::Relaxed);
    }

    /// Sends the spool to the log, oldest first; empties it when all went.
    async fn replay(&mut self) {
        let lines = match self.spool.read_all() {
            Ok(lines) => lines,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the usage spool");
                return;
            }
        };
        let mut events = Vec::with_capacity(lines.len());
        for line in &lines {
            match Envelope::decode(line) {
                Ok(envelope) => events.push(envelope),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable line in the usage spool; kept out of the log")
                }
            }
        }
        for chunk in events.chunks(BATCH) {
            if !self.append(chunk).await {
                return;
            }
        }
        if let Err(e) = self.spool.clear() {
            tracing::error!(error = %e, "cannot empty the usage spool; its events will be sent again (harmlessly)");
        }
        tracing::info!(
            events = lines.len(),
            "usage spool replayed into the event log"
        );
        self.spooled.store(self.spool.pending(), Ordering::Relaxed);
    }
}

/// The id of a batch record: a fold of its events' ids, in order, so the
/// same batch sent again has the same id (and the log drops it). Event ids
/// are random v4 UUIDs; the fold of a different batch matching is as
/// unlikely as two random ids matching. A fold, not a hash: this runs for
/// every append.
fn batch_id(events: &[Envelope]) -> uuid::Uuid {
    let folded = events.iter().fold(
        0x6d72_6261_7463_6800_u128 ^ events.len() as u128,
        |acc, e| acc.rotate_left(29) ^ e.id.as_u128(),
    );
    uuid::Uuid::from_u128(folded)
}

/// What one request needs to record its usage when it is served.
#[derive(Clone)]
pub struct Recording {
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) accounts: Arc<crate::accounts::Accounts>,
    pub(crate) caller: crate::keys::Caller,
    pub(crate) request_id: String,
    pub(crate) started: std::time::Instant,
    pub(crate) kind: events::RequestKind,
    pub(crate) tier: Option<String>,
    pub(crate) auto: Option<events::AutoDecision>,
}

/// A served request's billing facts.
pub struct Served<'a> {
    pub model: &'a str,
    pub provider: catalog::ProviderId,
    pub free: bool,
    pub tokens: events::Tokens,
    pub cost: money::Money,
    pub attempts: &'a [crate::error::Attempt],
    pub outcome: events::Outcome,
    pub first_byte: Option<Duration>,
}

impl Recording {
    /// Publishes the request's `UsageRecorded` and counts its cost against
    /// the account until the ledger's state includes it.
    pub fn record(&self, served: Served<'_>) {
        let origin = self.publisher.origin();
        let now = chrono::Utc::now();
        self.accounts.charge(
            self.caller.account,
            origin.seq,
            served.cost,
            now.date_naive(),
        );
        let attempts = served
            .attempts
            .iter()
            .map(|a| events::AttemptRecord {
                provider: a.provider.clone(),
                model: a.model.clone(),
                status: a.status,
                error: a.error.clone(),
                latency_ms: a.latency_ms,
                skipped: a.skipped,
            })
            .collect();
        let event = events::UsageRecorded {
            request_id: self.request_id.clone(),
            account: self.caller.account,
            key: self.caller.key.clone(),
            kind: self.kind,
            model: served.model.to_owned(),
            provider: served.provider.to_string(),
            tier: self.tier.clone(),
            auto: self.auto.clone(),
            tokens: served.tokens,
            cost: served.cost,
            free: served.free,
            attempts,
            timings: events::Timings {
                total_ms: self.started.elapsed().as_millis() as u64,
                first_byte_ms: served.first_byte.map(|d| d.as_millis() as u64),
            },
            outcome: served.outcome,
            origin,
        };
        self.publisher.record(Envelope {
            id: uuid::Uuid::new_v4(),
            at: now,
            event: events::Event::UsageRecorded(Box::new(event)),
        });
    }
}
