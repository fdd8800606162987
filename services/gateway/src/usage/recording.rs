//! One request's usage event: numbered when the request's first provider
//! attempt is about to start, written exactly once whatever happens next:
//! served, cut off, failed, or dropped unfinished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{AttemptRecord, Envelope, Event, Origin, Outcome, RequestKind, UsageRecorded};

use super::Publisher;
use crate::accounts::Accounts;
use crate::attribution::Attribution;
use crate::error::Attempt;
use crate::keys::Caller;

/// Whether the client still waits for the answer. The request's work runs
/// detached from the connection (a client that hangs up does not cancel a
/// provider call the platform pays for); this tells the event.
#[derive(Debug, Clone, Default)]
pub struct ClientWatch(Arc<AtomicBool>);

impl ClientWatch {
    /// The client went away before its answer was handed over.
    pub fn gone(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that marks the client gone if dropped armed (the handler
    /// future was dropped: hyper does that when the connection closes).
    pub fn guard(&self) -> ClientGuard {
        ClientGuard(Some(self.clone()))
    }
}

/// See [`ClientWatch::guard`].
pub struct ClientGuard(Option<ClientWatch>);

impl ClientGuard {
    /// The answer was handed over: the client did not leave before it.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if let Some(watch) = &self.0 {
            watch.0.store(true, Ordering::Relaxed);
        }
    }
}

/// A request's billing facts.
pub struct Served<'a> {
    pub model: &'a str,
    pub provider: &'a str,
    pub free: bool,
    pub tokens: events::Tokens,
    pub cost: money::Money,
    pub attempts: &'a [Attempt],
    pub outcome: Outcome,
    pub first_byte: Option<Duration>,
    /// Why the model stopped, per choice (OpenAI's names).
    pub finish_reasons: Vec<String>,
    /// The answer's text, when [`Recording::captures`].
    pub output: Option<String>,
}

/// What one request needs to record its usage. Shared by the request's
/// attempts; the first of [`Recording::record`] and [`Recording::fail`]
/// writes the event, and dropping it unwritten records a failure, so every
/// number taken has its event.
pub struct Recording {
    publisher: Arc<Publisher>,
    accounts: Arc<Accounts>,
    key_meter: Arc<crate::key_limits::KeyMeter>,
    caller: Caller,
    request_id: String,
    started: Instant,
    kind: RequestKind,
    tier: Option<String>,
    auto: Option<events::AutoDecision>,
    prefer: Option<&'static str>,
    attribution: Attribution,
    origin: Origin,
    client: ClientWatch,
    done: AtomicBool,
    /// The conversation, when the account captures text for its traces.
    captured: std::sync::OnceLock<Vec<events::ContentMessage>>,
}

/// Who asked and how the request was routed.
pub struct Routed {
    pub caller: Caller,
    pub request_id: String,
    pub started: Instant,
    pub kind: RequestKind,
    pub tier: Option<String>,
    pub auto: Option<events::AutoDecision>,
    /// The request's `prefer` (chat).
    pub prefer: Option<&'static str>,
    /// Who it was for and its tags.
    pub attribution: Attribution,
}

impl Recording {
    /// Takes the request's origin number now.
    pub fn start(
        publisher: Arc<Publisher>,
        accounts: Arc<Accounts>,
        key_meter: Arc<crate::key_limits::KeyMeter>,
        request: Routed,
    ) -> Arc<Recording> {
        let origin = publisher.origin();
        Arc::new(Recording {
            publisher,
            accounts,
            key_meter,
            caller: request.caller,
            request_id: request.request_id,
            started: request.started,
            kind: request.kind,
            tier: request.tier,
            auto: request.auto,
            prefer: request.prefer,
            attribution: request.attribution,
            origin,
            client: ClientWatch::default(),
            done: AtomicBool::new(false),
            captured: std::sync::OnceLock::new(),
        })
    }

    /// Keeps the conversation's text (bounded) to publish with the usage:
    /// only for an account whose traces capture text.
    pub fn capture(&self, input: Vec<events::ContentMessage>) {
        let _ = self.captured.set(input);
    }

    /// Whether the answer's text is wanted (see [`Recording::capture`]).
    pub fn captures(&self) -> bool {
        self.captured.get().is_some()
    }

    /// Whether the client still waits for the answer.
    pub fn client(&self) -> &ClientWatch {
        &self.client
    }

    /// Records the served request and counts its cost against the account
    /// until the ledger's state includes it. A whole response whose client
    /// had gone is recorded as `client_disconnected` (and billed in full).
    pub fn record(&self, served: Served<'_>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let outcome = match served.outcome {
            Outcome::Completed if self.client.gone() => Outcome::ClientDisconnected,
            other => other,
        };
        self.write(Served { outcome, ..served });
    }

    /// Records a request no candidate answered (nothing billed).
    pub fn fail(&self, attempts: &[Attempt]) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let last = attempts.last();
        self.write(Served {
            model: last.map_or("", |a| a.model.as_str()),
            provider: last.map_or("", |a| a.provider.as_str()),
            free: false,
            tokens: events::Tokens::default(),
            cost: money::Money::ZERO,
            attempts,
            outcome: Outcome::Failed,
            first_byte: None,
            finish_reasons: Vec::new(),
            output: None,
        });
    }

    fn write(&self, fill: Served<'_>) {
        let now = chrono::Utc::now();
        self.accounts.charge(
            self.caller.account,
            self.caller.limits.budget.map(|_| self.caller.key.as_str()),
            fill.cost,
            now.date_naive(),
        );
        let t = &fill.tokens;
        self.key_meter
            .used(&self.caller, t.input + t.output, Instant::now());
        let attempts = fill
            .attempts
            .iter()
            .map(|a| AttemptRecord {
                provider: a.provider.clone(),
                model: a.model.clone(),
                status: a.status,
                error: events::cap(&a.error, events::MAX_ERROR_CHARS),
                latency_ms: a.latency_ms,
                skipped: a.skipped,
            })
            .collect();
        let event = UsageRecorded {
            request_id: self.request_id.clone(),
            account: self.caller.account,
            key: self.caller.key.clone(),
            kind: self.kind,
            model: fill.model.to_owned(),
            provider: fill.provider.to_owned(),
            tier: self.tier.clone(),
            auto: self.auto.clone(),
            prefer: self.prefer.map(str::to_owned),
            tokens: fill.tokens,
            cost: fill.cost,
            free: fill.free,
            attempts,
            timings: events::Timings {
                total_ms: self.started.elapsed().as_millis() as u64,
                first_byte_ms: fill.first_byte.map(|d| d.as_millis() as u64),
            },
            outcome: fill.outcome,
            finish_reasons: fill.finish_reasons,
            user: self.attribution.user.clone(),
            tags: self.attribution.tags.clone(),
            origin: self.origin.clone(),
        };
        if let Some(input) = self.captured.get() {
            let output = fill.output.as_deref().unwrap_or_default();
            self.publisher.record(&Envelope::new_at(
                now,
                Event::ContentRecorded(Box::new(events::ContentRecorded {
                    account: self.caller.account,
                    request_id: self.request_id.clone(),
                    input: input.clone(),
                    output: events::cap(output, events::MAX_CONTENT_CHARS),
                })),
            ));
        }
        self.publisher.record(&Envelope::new_at(
            now,
            Event::UsageRecorded(Box::new(event)),
        ));
    }
}

/// A request dropped without an event (its work was cancelled) still
/// writes one, so its number is not a gap.
impl Drop for Recording {
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            self.fail(&[]);
        }
    }
}
