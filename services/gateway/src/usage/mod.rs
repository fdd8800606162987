//! Usage events: one `UsageRecorded` per request the gateway tried to
//! serve, written before the response completes, published off the
//! request path.
//!
//! A request takes an origin number when its first provider attempt is
//! about to start ([`Recording`]), and its event is appended to the
//! [`journal`] (one `write`, into the page cache) before the response that
//! incurred it completes. One background task (the [`Publisher`]'s worker)
//! reads the journal in order and appends its lines to the event log in
//! records sized by bytes against the log's limit, gathering for
//! `gateway.usage_linger_ms` (20 ms; 400 ms in `up`) after a quiet spell,
//! or until 256 KiB are written ([`journal::FILLED_BYTES`]); once the log
//! has taken a segment it is deleted. When the log is down or slow the journal
//! simply grows on disk and the worker retries every half second, oldest
//! first, so the log receives each gateway's events in the order they were
//! written. A line the log refuses even alone is slimmed (error texts, then
//! `auto`'s signals, then all but the last attempt are dropped); if it still
//! does not fit it is set aside in `rejected.jsonl` and counted, never
//! allowed to block what follows.
//!
//! Nothing served is lost to a killed process: the line is in the journal
//! before the client has its answer. What a machine crash can take is
//! bounded by the worker syncing the journal every second. Numbers taken by
//! requests that never wrote an event (the process died mid-request) show
//! as gaps in the gateway's sequence, which the ledger and `reconcile`
//! report.

pub mod journal;
mod recording;

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlog::{Bucket, EventLog, Outgoing};
use events::{Envelope, Event, GatewayStatus, Origin, GATEWAYS_BUCKET};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use journal::{Journal, JournalError};
pub use recording::{ClientGuard, ClientWatch, Recording, Routed, Served};

/// How long one append may take before the worker gives up and retries later.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the worker wakes without being told: retries, syncs, status.
const TICK: Duration = Duration::from_millis(500);
/// How often the journal is synced to disk while written to.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the gateway's status is published.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Bytes of journal read per round.
const READ_BYTES: usize = 4 * 1024 * 1024;
/// Lines kept in memory when the journal cannot be written (disk full);
/// beyond this they are lost, and counted.
const FALLBACK_LINES: usize = 100_000;
/// How long a graceful shutdown waits for the log to take the journal.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How long the publisher waits before sending after a quiet spell, by
/// default: at a few hundred requests a second, one append (one commit)
/// carries several events.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(20);

/// Counters a status report and tests read.
#[derive(Default)]
struct Counters {
    /// Lines the log has taken (this process).
    sent: AtomicU64,
    /// Lines set aside because the log refuses them even slimmed.
    set_aside: AtomicU64,
    /// Lines lost: neither journal nor memory could keep them.
    lost: AtomicU64,
    /// Shutting down: the worker closes the segment being written once it
    /// has sent it, so a clean stop leaves no sent lines in the journal
    /// (which `reconcile` would count as usage left behind).
    closing: std::sync::atomic::AtomicBool,
}

/// Journals usage events and publishes them to the log.
pub struct Publisher {
    journal: Arc<Journal>,
    /// This process, among all the runs of this gateway id.
    instance: String,
    fallback: Arc<Mutex<Vec<Vec<u8>>>>,
    counters: Arc<Counters>,
    flushes: mpsc::UnboundedSender<oneshot::Sender<()>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Publisher {
    /// Opens the journal under `data_dir` as gateway `configured_id` (or an
    /// adopted or new id, see [`journal`]) and starts publishing to `log`,
    /// gathering for `linger` after a quiet spell.
    pub fn start(
        log: Arc<dyn EventLog>,
        data_dir: &Path,
        configured_id: Option<&str>,
        linger: Duration,
    ) -> Result<Arc<Publisher>, JournalError> {
        let journal = Arc::new(Journal::open(data_dir, configured_id)?);
        let instance = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let opened = journal.opened;
        if opened.own_lines + opened.taken_over > 0 {
            tracing::info!(
                gateway = journal.id(),
                own = opened.own_lines,
                taken_over = opened.taken_over,
                "usage events from earlier runs are in the journal; sending them to the event log"
            );
        }
        let fallback = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let (flushes, flush_requests) = mpsc::unbounded_channel();
        let worker = Worker {
            log,
            journal: Arc::clone(&journal),
            linger,
            fallback: Arc::clone(&fallback),
            counters: Arc::clone(&counters),
            reading: None,
            sealed: None,
            retry_at: None,
            last_sync: Instant::now(),
            synced_written: journal.written(),
            status: StatusReporter::new(&instance, data_dir),
        };
        let task = tokio::spawn(worker.run(flush_requests));
        Ok(Arc::new(Publisher {
            journal,
            instance,
            fallback,
            counters,
            flushes,
            task: Mutex::new(Some(task)),
        }))
    }

    /// This gateway's id (its journal's identity).
    pub fn gateway(&self) -> &str {
        self.journal.id()
    }

    /// This process's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Takes the next number of this gateway's sequence.
    pub fn origin(&self) -> Origin {
        Origin {
            gateway: self.journal.id().to_owned(),
            seq: self.journal.take_seq(),
            instance: Some(self.instance.clone()),
        }
    }

    /// Writes `envelope` to the journal; never waits for the log. If the
    /// journal cannot be written the line is kept in memory for the worker.
    pub fn record(&self, envelope: &Envelope) {
        let mut line = Vec::with_capacity(1024);
        envelope.encode_into(&mut line);
        line.push(b'\n');
        if let Err(e) = self.journal.append(&line) {
            let mut fallback = self
                .fallback
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if fallback.len() < FALLBACK_LINES {
                tracing::error!(error = %e, "cannot write the usage journal; keeping the event in memory");
                fallback.push(line);
            } else {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot write the usage journal and memory is full; a usage event is lost");
            }
            self.journal.appended.notify_one();
        }
    }

    /// Events written and not yet taken by the log.
    pub fn pending(&self) -> u64 {
        let written = self.journal.written();
        let done = self.counters.sent.load(Ordering::Relaxed)
            + self.counters.set_aside.load(Ordering::Relaxed);
        written.saturating_sub(done)
    }

    /// Lines set aside because the log refused them even slimmed.
    pub fn set_aside(&self) -> u64 {
        self.counters.set_aside.load(Ordering::Relaxed)
    }

    /// Asks the worker to send what is written now; returns after one try
    /// (the log may still be down: [`Publisher::pending`] tells).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).is_ok() {
            let _ = wait.await;
        }
    }

    /// Sends what it can within a few seconds, saves the sequence, stops.
    /// What the log has not taken stays in the journal for the next start.
    pub async fn shutdown(&self) {
        self.counters.closing.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        loop {
            self.flush().await;
            if self.pending() == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        if let Err(e) = self.journal.save_seq() {
            tracing::error!(error = %e, "cannot save the usage sequence");
        }
        let pending = self.pending();
        if pending > 0 {
            tracing::warn!(
                events = pending,
                journal = %self.journal.dir().display(),
                "usage events not yet in the event log stay in the journal; the next gateway started on this data dir sends them"
            );
        }
    }
}

/// Where the worker reads: a segment and the bytes of it the log has taken.
#[derive(Debug, Clone, Copy)]
struct Position {
    segment: u64,
    offset: u64,
}

struct Worker {
    log: Arc<dyn EventLog>,
    journal: Arc<Journal>,
    linger: Duration,
    fallback: Arc<Mutex<Vec<Vec<u8>>>>,
    counters: Arc<Counters>,
    reading: Option<Position>,
    /// A segment rotated out whose late writers may still hold it.
    sealed: Option<Arc<journal::Segment>>,
    /// No append before this (after a failure).
    retry_at: Option<Instant>,
    last_sync: Instant,
    synced_written: u64,
    status: StatusReporter,
}

impl Worker {
    async fn run(mut self, mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                flush = flushes.recv() => {
                    self.retry_at = None;
                    self.pump().await;
                    match flush {
                        Some(done) => { let _ = done.send(()); }
                        None => return,
                    }
                }
                _ = self.journal.appended.notified() => {
                    // Gather a batch: one append of many events costs the
                    // log and this process far less than many of one. A
                    // `Notified` hears `notify_waiters` from its creation
                    // on, so a journal filled before the check or after it
                    // is not missed.
                    {
                        let filled = self.journal.filled.notified();
                        if !self.journal.is_filled() {
                            tokio::select! {
                                () = tokio::time::sleep(self.linger) => {}
                                () = filled => {}
                            }
                        }
                    }
                    self.pump().await;
                }
                _ = tick.tick() => {
                    self.pump().await;
                    self.sync();
                    self.status.report(&self.log, self.snapshot()).await;
                }
            }
        }
    }

    /// Sends everything written so far that the log takes now.
    async fn pump(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.retry_at = None;
        self.journal.sending();
        if !self.send_fallback().await {
            return;
        }
        loop {
            match self.step().await {
                Ok(true) => continue,
                Ok(false) => return,
                Err(()) => {
                    self.retry_at = Some(Instant::now() + TICK);
                    return;
                }
            }
        }
    }

    /// One round: reads a chunk of the journal and sends it. `Ok(true)` when
    /// there may be more, `Ok(false)` when caught up, `Err` when the log
    /// did not take it (retried later from the same place).
    async fn step(&mut self) -> Result<bool, ()> {
        let mut current = self.journal.current();
        if self.reading.is_none() {
            let first = self
                .journal
                .segments()
                .ok()
                .and_then(|s| s.first().copied());
            self.reading = Some(Position {
                segment: first.unwrap_or(current.number),
                offset: 0,
            });
        }
        let Some(at) = self.reading else {
            return Ok(false);
        };
        let full = at.offset >= journal::SEGMENT_BYTES;
        let closing = self.counters.closing.load(Ordering::Relaxed)
            && at.offset > 0
            && self.journal.size(at.segment) == at.offset;
        if at.segment == current.number && (full || closing) {
            match self.journal.rotate() {
                Ok(old) => {
                    self.sealed = Some(old);
                    current = self.journal.current();
                }
                Err(e) => tracing::error!(error = %e, "cannot start a new journal segment"),
            }
        }
        let chunk = match self.journal.read(at.segment, at.offset, READ_BYTES) {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::error!(error = %e, segment = at.segment, "cannot read the usage journal");
                return Err(());
            }
        };
        let end = chunk.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if end == 0 {
            return Ok(self.finish_segment(at, &current, chunk.len()));
        }
        let lines: Vec<&[u8]> = journal::complete_lines(&chunk[..end]).collect();
        if !self.send(&lines).await {
            return Err(());
        }
        self.reading = Some(Position {
            segment: at.segment,
            offset: at.offset + end as u64,
        });
        Ok(true)
    }

    /// Nothing complete is left in the segment being read: moves on to the
    /// next one if this one is closed and no writer holds it; `true` if it moved.
    fn finish_segment(&mut self, at: Position, current: &journal::Segment, torn: usize) -> bool {
        if at.segment >= current.number {
            return false;
        }
        if let Some(sealed) = &self.sealed {
            if sealed.number == at.segment && Arc::strong_count(sealed) > 1 {
                return false;
            }
            // Writers are done with it: read once more before deleting.
            if sealed.number == at.segment
                && self.journal.size(at.segment) > at.offset + torn as u64
            {
                self.sealed = None;
                return true;
            }
        }
        if torn > 0 {
            tracing::warn!(
                bytes = torn,
                segment = at.segment,
                "skipping a torn last line of a usage journal segment"
            );
        }
        if let Err(e) = self.journal.delete(at.segment) {
            tracing::error!(error = %e, "cannot delete a sent journal segment; its events will be sent again (harmlessly)");
        }
        if self.sealed.as_ref().is_some_and(|s| s.number == at.segment) {
            self.sealed = None;
        }
        let next = self
            .journal
            .segments()
            .ok()
            .and_then(|s| s.into_iter().find(|&n| n > at.segment))
            .unwrap_or(current.number);
        self.reading = Some(Position {
            segment: next,
            offset: 0,
        });
        true
    }

    /// Lines kept in memory when the journal could not be written.
    async fn send_fallback(&mut self) -> bool {
        let lines = std::mem::take(
            &mut *self
                .fallback
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if lines.is_empty() {
            return true;
        }
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.trim_ascii_end()).collect();
        if self.send(&refs).await {
            return true;
        }
        let mut fallback = self
            .fallback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = std::mem::replace(&mut *fallback, lines);
        fallback.extend(newer);
        self.retry_at = Some(Instant::now() + TICK);
        false
    }

    /// Appends `lines` as records of at most the log's size, in order;
    /// whether the log took them all.
    async fn send(&mut self, lines: &[&[u8]]) -> bool {
        let limit = self.log.max_record_bytes();
        let mut prepared: Vec<Cow<'_, [u8]>> = Vec::with_capacity(lines.len());
        for &line in lines {
            if line.len() + 2 <= limit {
                prepared.push(Cow::Borrowed(line));
            } else if let Some(smaller) = slim(line, limit - 2) {
                prepared.push(Cow::Owned(smaller));
            } else {
                self.set_aside(line, limit);
            }
        }
        let records = records(&prepared, limit);
        if records.is_empty() {
            return true;
        }
        let outgoing: Vec<Outgoing<'_>> = records
            .iter()
            .map(|r| Outgoing {
                subject: events::subjects::USAGE,
                id: &r.id,
                payload: &r.payload,
            })
            .collect();
        match tokio::time::timeout(APPEND_TIMEOUT, self.log.append_batch(&outgoing)).await {
            Ok(Ok(_)) => {
                self.counters
                    .sent
                    .fetch_add(prepared.len() as u64, Ordering::Relaxed);
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, events = lines.len(), "event log did not take usage events; they stay in the journal");
                false
            }
            Err(_) => {
                tracing::warn!(
                    events = lines.len(),
                    "event log did not answer in time; usage stays in the journal"
                );
                false
            }
        }
    }

    /// Keeps a line the log refuses even slimmed out of the way of the rest.
    fn set_aside(&self, line: &[u8], limit: usize) {
        tracing::error!(
            bytes = line.len(),
            limit,
            "a usage event does not fit the event log's records even slimmed; set aside in the journal's rejected.jsonl"
        );
        if let Err(e) = self.journal.set_aside(line) {
            tracing::error!(error = %e, "cannot set the usage event aside; it is lost");
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.set_aside.fetch_add(1, Ordering::Relaxed);
    }

    /// Syncs the segment being written, at most once a second, when written to.
    fn sync(&mut self) {
        let written = self.journal.written();
        if written == self.synced_written || self.last_sync.elapsed() < SYNC_EVERY {
            return;
        }
        let segment = self.journal.current();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = segment.sync() {
                tracing::error!(error = %e, "cannot sync the usage journal");
            }
        });
        self.synced_written = written;
        self.last_sync = Instant::now();
    }

    fn snapshot(&self) -> GatewayStatus {
        let mut bytes = 0;
        if let (Ok(segments), Some(at)) = (self.journal.segments(), self.reading) {
            for n in segments.into_iter().filter(|&n| n >= at.segment) {
                bytes += self.journal.size(n);
            }
            bytes = bytes.saturating_sub(at.offset);
        }
        let done = self.counters.sent.load(Ordering::Relaxed)
            + self.counters.set_aside.load(Ordering::Relaxed);
        GatewayStatus {
            gateway: self.journal.id().to_owned(),
            instance: self.status.instance.clone(),
            started_at: self.status.started_at,
            seen_at: chrono::Utc::now(),
            next_seq: self.journal.next_seq(),
            journal_events: self.journal.written().saturating_sub(done),
            journal_bytes: bytes,
            set_aside: self.counters.set_aside.load(Ordering::Relaxed),
            lost: self.counters.lost.load(Ordering::Relaxed),
            data_dir: self.status.data_dir.clone(),
        }
    }
}

/// Publishes the gateway's status (journal backlog, sequence) so operators
/// and `reconcile` see gateways with usage not yet in the log.
struct StatusReporter {
    instance: String,
    started_at: chrono::DateTime<chrono::Utc>,
    data_dir: String,
    bucket: Option<Arc<dyn Bucket>>,
    last: Option<Instant>,
}

impl StatusReporter {
    fn new(instance: &str, data_dir: &Path) -> StatusReporter {
        StatusReporter {
            instance: instance.to_owned(),
            started_at: chrono::Utc::now(),
            data_dir: data_dir.display().to_string(),
            bucket: None,
            last: None,
        }
    }

    async fn report(&mut self, log: &Arc<dyn EventLog>, status: GatewayStatus) {
        if self.last.is_some_and(|t| t.elapsed() < STATUS_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        if self.bucket.is_none() {
            self.bucket = tokio::time::timeout(APPEND_TIMEOUT, log.bucket(GATEWAYS_BUCKET))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let (Some(bucket), Ok(value)) = (&self.bucket, serde_json::to_vec(&status)) else {
            return;
        };
        let put = tokio::time::timeout(APPEND_TIMEOUT, bucket.put(&status.gateway, &value)).await;
        if !matches!(put, Ok(Ok(_))) {
            tracing::debug!("cannot publish the gateway's status");
        }
    }
}

/// A line slimmed until it fits `limit` bytes, if it can be.
fn slim(line: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut envelope = Envelope::decode(line).ok()?;
    for level in 1..=events::SLIMMEST {
        let Event::UsageRecorded(usage) = &mut envelope.event else {
            return None;
        };
        usage.slim(level);
        let mut out = Vec::new();
        envelope.encode_into(&mut out);
        if out.len() <= limit {
            return Some(out);
        }
    }
    None
}

/// One log record: a JSON array of envelopes, and its dedupe id.
struct Batch {
    payload: Vec<u8>,
    id: String,
}

/// Groups `lines` (each one envelope) into records of at most `limit`
/// bytes, in order. Every line must fit alone (see [`slim`]).
fn records(lines: &[Cow<'_, [u8]>], limit: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut payload = Vec::new();
    let mut ids = Vec::new();
    for line in lines {
        if !ids.is_empty() && payload.len() + line.len() + 2 > limit {
            payload.push(b']');
            out.push(Batch {
                payload: std::mem::take(&mut payload),
                id: batch_id(&std::mem::take(&mut ids)).to_string(),
            });
        }
        payload.push(if ids.is_empty() { b'[' } else { b',' });
        payload.extend_from_slice(line);
        ids.push(event_id(line));
    }
    if !ids.is_empty() {
        payload.push(b']');
        out.push(Batch {
            payload,
            id: batch_id(&ids).to_string(),
        });
    }
    out
}

/// The event id of a journal line (`{"id":"<uuid>",…`, as the envelope
/// writer puts it first); a fold of the bytes for anything else.
fn event_id(line: &[u8]) -> uuid::Uuid {
    line.get(7..43)
        .and_then(|id| std::str::from_utf8(id).ok())
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .unwrap_or_else(|| {
            let folded = line.iter().fold(0xcbf2_9ce4_8422_2325_u128, |acc, &b| {
                (acc ^ u128::from(b)).wrapping_mul(0x1000_0000_01b3)
            });
            uuid::Uuid::from_u128(folded)
        })
}

/// The id of a batch record: a fold of its events' ids, in order, so the
/// same batch sent again has the same id (and the log drops it). Event ids
/// are random v4 UUIDs; the fold of a different batch matching is as
/// unlikely as two random ids matching. A fold, not a hash: this runs for
/// every append.
fn batch_id(ids: &[uuid::Uuid]) -> uuid::Uuid {
    let folded = ids
        .iter()
        .fold(0x6d72_6261_7463_6800_u128 ^ ids.len() as u128, |acc, id| {
            acc.rotate_left(29) ^ id.as_u128()
        });
    uuid::Uuid::from_u128(folded)
}
