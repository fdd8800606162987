//! Provider health: circuit breakers, Retry-After cool-downs and observed speed.
//!
//! Every attempt at a model first asks [`Health::admit`]. The answer is a
//! [`Permit`] (go ahead; report how it went) or a [`Skip`] (the model is
//! known to be failing or rate limited; try the next candidate). Three
//! things can turn an attempt away:
//!
//! 1. the model's breaker is open (its own failures: 5xx, timeouts, a
//!    failure rate over the window; see [`breaker`]);
//! 2. the model is cooling down after a 429 with `Retry-After`, for exactly
//!    that long (a rate limit is not a failure, so the breaker is untouched);
//! 3. the provider's breaker is open. It counts only what concerns the
//!    provider as a whole: connection-level errors (no connection, connect
//!    timeout, a connection dropped before any answer), which reach the
//!    provider's host rather than one model, and 401/403, a bad provider key,
//!    which trips it at once. Any HTTP answer from any of its models resets
//!    its count, so it trips only when all its models fail at connection level.
//!
//! Each process counts its own attempts; the breakers' transitions and the
//! cool-downs are shared with every other replica through the event log
//! (see [`fleet`]).

pub mod breaker;
pub mod fleet;
pub mod latency;
mod report;
mod stall;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use catalog::{EmbeddingModel, Model, ProviderId};

use crate::providers::{ProviderError, TimeoutKind};
use breaker::{Admission, Breaker, BreakerConfig, State, Transition};
use fleet::{Change, News, Sharing, Target};
use latency::{Latency, LatencyConfig, Speed};
pub use report::{ModelReport, ProviderReport, Report, PROMETHEUS_TEXT};
use stall::Waiting;

/// Output assumed, for stall detection, of a whole response with no limit set:
/// long enough that a legitimately long answer is not taken for a hang.
const UNBOUNDED_OUTPUT_TOKENS: u32 = 4_096;

/// What health is kept for: a chat model or an embedding model.
pub trait Monitored {
    /// The catalog id, which keys the model's health.
    fn id(&self) -> &str;
    /// Who serves it.
    fn provider(&self) -> ProviderId;
    /// Its speed before any traffic is observed.
    fn seed(&self) -> Speed;
    /// Output assumed, for stall detection, of a whole answer with no limit set.
    fn unbounded_output_tokens(&self) -> u32;
}

impl Monitored for Model {
    fn id(&self) -> &str {
        &self.id
    }
    fn provider(&self) -> ProviderId {
        self.provider
    }
    fn seed(&self) -> Speed {
        Speed::of_catalog(self)
    }
    fn unbounded_output_tokens(&self) -> u32 {
        self.max_output_tokens.min(UNBOUNDED_OUTPUT_TOKENS)
    }
}

/// An embedding call produces no tokens: its expected time is the catalog's
/// time per call, which the observed time to first byte then replaces.
impl Monitored for EmbeddingModel {
    fn id(&self) -> &str {
        &self.id
    }
    fn provider(&self) -> ProviderId {
        self.provider
    }
    fn seed(&self) -> Speed {
        Speed {
            ttft_ms: f64::from(self.ttft_ms),
            output_tokens_per_s: f64::from(u32::MAX),
        }
    }
    fn unbounded_output_tokens(&self) -> u32 {
        0
    }
}

/// Why an attempt was not made.
#[derive(Debug, Clone)]
pub struct Skip {
    /// For the client, in the attempts list.
    pub reason: String,
    /// When the model may be tried again.
    pub retry_in: Duration,
}

/// Attempt counts of one model, for metrics.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    succeeded: u64,
    failed: u64,
    rate_limited: u64,
    skipped: u64,
}

struct ModelHealth {
    breaker: Breaker,
    cooling_until: Option<Instant>,
    seed: Speed,
    latency: Latency,
    counts: Counts,
    waiting: Waiting,
}

struct ProviderHealth {
    breaker: Breaker,
}

struct Inner {
    breaker: BreakerConfig,
    latency: LatencyConfig,
    models: RwLock<HashMap<String, Arc<Mutex<ModelHealth>>>>,
    providers: Mutex<HashMap<ProviderId, ProviderHealth>>,
    next_attempt: AtomicU64,
    /// Set when breakers are shared with other replicas.
    sharing: OnceLock<Sharing>,
    /// The replica that opened each breaker open now.
    tripped_by: Mutex<HashMap<Target, String>>,
    /// The latest breaker openings, newest last (at most [`INCIDENTS`]).
    incidents: Mutex<std::collections::VecDeque<Incident>>,
}

/// How many breaker openings [`Health::incidents`] keeps.
pub const INCIDENTS: usize = 50;

/// A breaker opening, as the public status page lists it: what opened and
/// when, nothing of any request or tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub at: chrono::DateTime<chrono::Utc>,
    /// The model id, or `provider {name}`.
    pub what: String,
}

/// What an attempt is expected to take, to tell a slow answer from a hang.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Streamed: only the first chunk is waited for.
    pub stream: bool,
    /// The output asked for; up to 4,096 tokens (the model's maximum if lower) when absent.
    pub output_tokens: Option<u32>,
}

/// The health of every model and provider this gateway has talked to.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

/// A poisoned lock only means another request panicked mid-update; the
/// counters inside are still meaningful, so carry on with them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Health {
    /// Empty: every model starts closed, at its catalog speed.
    pub fn new(breaker: BreakerConfig, latency: LatencyConfig) -> Health {
        Health {
            inner: Arc::new(Inner {
                breaker,
                latency,
                models: RwLock::default(),
                providers: Mutex::default(),
                next_attempt: AtomicU64::new(0),
                sharing: OnceLock::new(),
                tripped_by: Mutex::default(),
                incidents: Mutex::default(),
            }),
        }
    }

    fn entry(&self, model: &(impl Monitored + ?Sized)) -> Arc<Mutex<ModelHealth>> {
        let found = self
            .inner
            .models
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(model.id())
            .cloned();
        let entry = found.unwrap_or_else(|| {
            let mut models = self
                .inner
                .models
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(models.entry(model.id().to_owned()).or_insert_with(|| {
                Arc::new(Mutex::new(ModelHealth {
                    breaker: Breaker::new(&self.inner.breaker, Instant::now()),
                    cooling_until: None,
                    seed: model.seed(),
                    latency: Latency::new(model.seed()),
                    counts: Counts::default(),
                    waiting: Waiting::default(),
                }))
            }))
        });
        entry
    }

    /// Locks a model's health, first following a catalog change of its speed seed.
    fn lock_fresh<'a>(
        entry: &'a Arc<Mutex<ModelHealth>>,
        model: &(impl Monitored + ?Sized),
    ) -> MutexGuard<'a, ModelHealth> {
        let mut health = lock(entry);
        let seed = model.seed();
        if health.seed != seed {
            health.seed = seed;
            health.latency.reseed(seed);
        }
        health
    }

    /// The breaker state of the model `id` (closed until it is first used).
    pub fn circuit(&self, id: &str) -> events::CircuitState {
        let entry = self
            .inner
            .models
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        entry.map_or(events::CircuitState::Closed, |e| {
            lock(&e).breaker.state(Instant::now()).circuit()
        })
    }

    /// The believed speed of `model` now: observed, or the catalog's.
    pub fn speed(&self, model: &(impl Monitored + ?Sized)) -> Speed {
        let models = self
            .inner
            .models
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match models.get(model.id()) {
            Some(entry) => lock(entry)
                .latency
                .speed(&self.inner.latency, Instant::now()),
            None => model.seed(),
        }
    }

    /// Whether an attempt at `model` may go out now.
    pub fn admit(&self, model: &(impl Monitored + ?Sized), expect: Expect) -> Result<Permit, Skip> {
        let entry = self.entry(model);
        let now = Instant::now();
        let mut health = Self::lock_fresh(&entry, model);
        if !self.inner.breaker.enabled {
            let (pass, provider) = (Admission::Pass, Admission::Pass);
            return Ok(self.permit(model, &entry, &mut health, expect, pass, provider));
        }
        let config = &self.inner.breaker;
        if health.breaker.state(now) == State::Closed
            && health.waiting.stalled(config.consecutive_failures, now)
        {
            let transition = health.breaker.trip(config, now);
            tracing::warn!(model = %model.id(), waiting = health.waiting.len(), "attempts stalled");
            self.announce(
                || model_target(model.id()),
                Some(transition),
                "attempts stalled",
            );
        }
        if let Some(until) = health.cooling_until.filter(|&u| u > now) {
            health.counts.skipped += 1;
            return Err(Skip {
                reason: "rate limited by the provider; cooling down as its Retry-After asked"
                    .into(),
                retry_in: until - now,
            });
        }
        let provider = match self.admit_provider(model.provider(), now) {
            Ok(admission) => admission,
            Err(skip) => {
                health.counts.skipped += 1;
                return Err(skip);
            }
        };
        let (admission, transition) = health.breaker.admit(&self.inner.breaker, now);
        self.announce(|| model_target(model.id()), transition, "cool-down over");
        match admission {
            Admission::Reject(retry_in) => {
                health.counts.skipped += 1;
                drop(health);
                if provider == Admission::Probe {
                    self.with_provider(model.provider(), |p| p.breaker.release());
                }
                Err(Skip {
                    reason: "circuit breaker open after repeated failures".into(),
                    retry_in,
                })
            }
            admission => Ok(self.permit(model, &entry, &mut health, expect, admission, provider)),
        }
    }

    fn admit_provider(&self, provider: ProviderId, now: Instant) -> Result<Admission, Skip> {
        let (admission, transition) =
            self.with_provider(provider, |p| p.breaker.admit(&self.inner.breaker, now));
        self.announce(
            || Target::Provider { provider },
            transition,
            "cool-down over",
        );
        match admission {
            Admission::Reject(retry_in) => Err(Skip {
                reason: format!(
                    "provider {provider} circuit breaker open (unreachable or its key refused)"
                ),
                retry_in,
            }),
            admission => Ok(admission),
        }
    }

    fn with_provider<T>(
        &self,
        provider: ProviderId,
        f: impl FnOnce(&mut ProviderHealth) -> T,
    ) -> T {
        let mut providers = lock(&self.inner.providers);
        let health = providers.entry(provider).or_insert_with(|| ProviderHealth {
            breaker: Breaker::new(&self.inner.breaker, Instant::now()),
        });
        f(health)
    }

    /// A permit for an attempt at `model`, registered among those waiting
    /// for a first byte; `health` is the model's, already locked.
    fn permit(
        &self,
        model: &(impl Monitored + ?Sized),
        entry: &Arc<Mutex<ModelHealth>>,
        health: &mut ModelHealth,
        expect: Expect,
        admission: Admission,
        provider_admission: Admission,
    ) -> Permit {
        let started = Instant::now();
        let id = self.inner.next_attempt.fetch_add(1, Ordering::Relaxed);
        let speed = health.latency.speed(&self.inner.latency, started);
        let output = expect
            .output_tokens
            .unwrap_or(model.unbounded_output_tokens());
        let expected_ms = if expect.stream {
            speed.ttft_ms
        } else {
            speed.expected_ms(u64::from(output))
        };
        let config = &self.inner.breaker;
        let patience_ms = (expected_ms * config.stall_factor).max(config.stall_min_ms as f64);
        let stalls_at = started + Duration::from_secs_f64(patience_ms.min(1e9) / 1000.0);
        health.waiting.enter(id, started, stalls_at);
        Permit {
            health: self.clone(),
            entry: Arc::clone(entry),
            model: model.id().to_owned(),
            provider: model.provider(),
            admission,
            provider_admission,
            started,
            id,
            stalls_at,
            waiting: true,
            settled: false,
        }
    }
}

fn model_target(id: &str) -> Target {
    Target::Model { id: id.to_owned() }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Model { id } => id.clone(),
        Target::Provider { provider } => format!("provider {provider}"),
    }
}

impl Health {
    /// Logs a transition of `target`'s breaker, remembers who opened it, and
    /// tells the other replicas when breakers are shared.
    /// `target` is built only when there is a transition: this runs on
    /// every attempt, and most attempts change nothing.
    fn announce(
        &self,
        target: impl FnOnce() -> Target,
        transition: Option<Transition>,
        reason: &str,
    ) {
        let Some(transition) = transition else {
            return;
        };
        let target = target();
        let what = describe(&target);
        let change = match transition {
            Transition::Opened(cooldown) => {
                tracing::warn!(%what, cooldown_ms = cooldown.as_millis() as u64, reason, "circuit breaker opened");
                Change::Open {
                    until_ms: fleet::now_ms() + cooldown.as_millis() as i64,
                }
            }
            Transition::HalfOpened => {
                tracing::info!(%what, "circuit breaker half-open: probing");
                Change::HalfOpen
            }
            Transition::Closed => {
                tracing::info!(%what, "circuit breaker closed");
                Change::Closed
            }
        };
        self.tell(target, change, reason);
    }

    /// Records `change` of `target` as this replica's and publishes it.
    fn tell(&self, target: Target, change: Change, reason: &str) {
        let sharing = self.inner.sharing.get();
        let replica = sharing.map_or("this gateway", |s| s.replica.as_str());
        self.note_tripper(&target, change, replica);
        if let Some(sharing) = sharing {
            let _ = sharing.out.send(News {
                target,
                change,
                reason: reason.to_owned(),
                replica: sharing.replica.clone(),
                instance: sharing.instance.clone(),
                at_ms: fleet::now_ms(),
            });
        }
    }

    fn note_tripper(&self, target: &Target, change: Change, replica: &str) {
        let mut tripped = lock(&self.inner.tripped_by);
        match change {
            Change::Open { .. } => {
                // A breaker already open that opens again (a longer
                // cooldown, another replica's news) is the same incident.
                if tripped.insert(target.clone(), replica.to_owned()).is_none() {
                    self.note_incident(target);
                }
            }
            Change::Closed => {
                tripped.remove(target);
            }
            Change::HalfOpen | Change::CoolingDown { .. } => {}
        }
    }

    fn note_incident(&self, target: &Target) {
        let mut incidents = lock(&self.inner.incidents);
        if incidents.len() == INCIDENTS {
            incidents.pop_front();
        }
        incidents.push_back(Incident {
            at: chrono::Utc::now(),
            what: describe(target),
        });
    }

    /// The latest breaker openings, newest first.
    pub fn incidents(&self) -> Vec<Incident> {
        lock(&self.inner.incidents).iter().rev().cloned().collect()
    }

    /// Which replica opened `target`'s breaker, while it is not closed.
    fn tripper(&self, target: &Target) -> Option<String> {
        lock(&self.inner.tripped_by).get(target).cloned()
    }

    /// Applies another replica's `news` (`model` is the catalog's model for
    /// a model target; news of a model this build does not know is skipped).
    pub fn apply(&self, news: &News, model: Option<&dyn Monitored>) {
        if !self.inner.breaker.enabled {
            return;
        }
        // Never longer than this replica would hold one itself: a replica
        // whose clock runs far ahead must not shut a model out for days.
        let longest = self
            .inner
            .breaker
            .max_cooldown_ms
            .max(fleet::MAX_REMOTE_COOLING_MS) as i64;
        let until = |at_ms: i64| {
            let now = fleet::now_ms();
            (at_ms > now).then(|| fleet::instant_of(at_ms.min(now + longest)))
        };
        let changed = match (&news.target, model) {
            (Target::Provider { provider }, _) => {
                self.with_provider(*provider, |p| match news.change {
                    Change::Open { until_ms } => {
                        until(until_ms).is_some_and(|t| p.breaker.open_until(t))
                    }
                    Change::Closed => p.breaker.close(),
                    Change::HalfOpen | Change::CoolingDown { .. } => false,
                })
            }
            (Target::Model { .. }, Some(model)) => {
                let entry = self.entry(model);
                let mut health = lock(&entry);
                match news.change {
                    Change::Open { until_ms } => {
                        until(until_ms).is_some_and(|t| health.breaker.open_until(t))
                    }
                    Change::Closed => health.breaker.close(),
                    Change::CoolingDown { until_ms } => match until(until_ms) {
                        Some(t) if health.cooling_until.is_none_or(|u| u < t) => {
                            health.cooling_until = Some(t);
                            true
                        }
                        _ => false,
                    },
                    Change::HalfOpen => false,
                }
            }
            (Target::Model { .. }, None) => false,
        };
        if changed {
            tracing::info!(what = %describe(&news.target), change = ?news.change, replica = %news.replica, reason = %news.reason, "breaker change from another replica");
            self.note_tripper(&news.target, news.change, &news.replica);
        }
    }
}

/// Leave to make one attempt. Report its outcome with one of the consuming
/// methods; a permit dropped unreported (the client went away) frees its
/// half-open probe slot and counts as nothing.
pub struct Permit {
    health: Health,
    entry: Arc<Mutex<ModelHealth>>,
    model: String,
    provider: ProviderId,
    admission: Admission,
    provider_admission: Admission,
    started: Instant,
    /// This attempt's place among those waiting for a first byte.
    id: u64,
    stalls_at: Instant,
    waiting: bool,
    settled: bool,
}

/// How a provider error bears on health.
enum Blame {
    /// The request itself was refused (a 4xx other providers would refuse too).
    Request,
    /// A rate limit with a known end.
    RateLimited(Duration),
    /// The provider's key was refused: the whole provider is unusable.
    ProviderKey,
    /// No connection, or it dropped before any answer: the provider's host.
    Connection,
    /// Anything else: this model failed.
    Model,
}

impl Blame {
    /// For operators, beside a breaker change it caused.
    fn reason(&self) -> &'static str {
        match self {
            Blame::Request => "a request the provider refused",
            Blame::RateLimited(_) => "rate limited with Retry-After",
            Blame::ProviderKey => "the provider refused its key (401/403)",
            Blame::Connection => "connection failures",
            Blame::Model => "failures",
        }
    }
}

fn blame(error: &ProviderError) -> Blame {
    match error {
        ProviderError::Status {
            status: 429,
            retry_after: Some(wait),
            ..
        } => Blame::RateLimited(*wait),
        ProviderError::Status {
            status: 401 | 403, ..
        } => Blame::ProviderKey,
        ProviderError::Status { .. } if !error.retryable() => Blame::Request,
        ProviderError::Connect(_) | ProviderError::Timeout(TimeoutKind::Connect) => {
            Blame::Connection
        }
        _ => Blame::Model,
    }
}

impl Permit {
    /// When the attempt started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The first byte of the answer arrived (a stream's first chunk).
    pub fn first_byte(&mut self) {
        self.stop_waiting(true);
    }

    fn stop_waiting(&mut self, answered: bool) {
        if !std::mem::take(&mut self.waiting) {
            return;
        }
        let mut health = lock(&self.entry);
        health.waiting.leave(self.id, self.started, self.stalls_at);
        if answered {
            health.waiting.answered(Instant::now());
        }
    }

    /// A whole (non-streamed) response with `output_tokens`.
    pub fn succeeded_whole(mut self, output_tokens: u64) {
        self.stop_waiting(true);
        let now = Instant::now();
        let elapsed = now - self.started;
        let config = &self.health.inner.latency;
        lock(&self.entry)
            .latency
            .observe_whole(config, elapsed, output_tokens, now);
        self.settle_success(now);
    }

    /// A finished stream: first chunk after `ttft`, then `output_tokens`
    /// until it ended.
    pub fn succeeded_stream(mut self, ttft: Duration, output_tokens: u64) {
        self.stop_waiting(true);
        let now = Instant::now();
        let generating = (now - self.started).saturating_sub(ttft);
        let config = &self.health.inner.latency;
        lock(&self.entry)
            .latency
            .observe_stream(config, ttft, output_tokens, generating, now);
        self.settle_success(now);
    }

    /// The attempt failed with `error`.
    pub fn failed(mut self, error: &ProviderError) {
        self.stop_waiting(false);
        self.settled = true;
        let now = Instant::now();
        let inner = Arc::clone(&self.health.inner);
        let config = &inner.breaker;
        let blame = blame(error);
        let mut model = lock(&self.entry);
        model
            .latency
            .observe_wait(&inner.latency, now - self.started, now);
        let (model_transition, provider_outcome) = match blame {
            Blame::Request => {
                model.counts.succeeded += 1;
                (model.breaker.succeeded(self.admission, now), Some(true))
            }
            Blame::RateLimited(wait) => {
                model.counts.rate_limited += 1;
                let until = now + wait;
                model.cooling_until = Some(model.cooling_until.map_or(until, |u| u.max(until)));
                if self.admission == Admission::Probe {
                    model.breaker.release();
                }
                (None, Some(true))
            }
            Blame::ProviderKey => {
                model.counts.failed += 1;
                if self.admission == Admission::Probe {
                    model.breaker.release();
                }
                (None, None)
            }
            Blame::Connection | Blame::Model => {
                model.counts.failed += 1;
                let transition = model.breaker.failed(config, self.admission, now);
                (transition, Some(matches!(blame, Blame::Model)))
            }
        };
        drop(model);
        if !config.enabled {
            return;
        }
        let reason = blame.reason();
        self.health
            .announce(|| model_target(&self.model), model_transition, reason);
        if let Blame::RateLimited(wait) = blame {
            let until_ms = fleet::now_ms() + wait.as_millis() as i64;
            let change = Change::CoolingDown { until_ms };
            self.health.tell(model_target(&self.model), change, reason);
        }
        let admission = self.provider_admission;
        let provider_transition =
            self.health
                .with_provider(self.provider, |p| match provider_outcome {
                    Some(true) => p.breaker.succeeded(admission, now),
                    Some(false) => p.breaker.failed(config, admission, now),
                    None => Some(p.breaker.trip(config, now)),
                });
        let provider = self.provider;
        self.health.announce(
            || Target::Provider { provider },
            provider_transition,
            reason,
        );
    }

    fn settle_success(&mut self, now: Instant) {
        self.settled = true;
        let mut model = lock(&self.entry);
        model.counts.succeeded += 1;
        let transition = model.breaker.succeeded(self.admission, now);
        drop(model);
        if !self.health.inner.breaker.enabled {
            return;
        }
        let reason = "a probe succeeded";
        self.health
            .announce(|| model_target(&self.model), transition, reason);
        let admission = self.provider_admission;
        let transition = self
            .health
            .with_provider(self.provider, |p| p.breaker.succeeded(admission, now));
        let provider = self.provider;
        self.health
            .announce(|| Target::Provider { provider }, transition, reason);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.stop_waiting(false);
        if self.settled {
            return;
        }
        if self.admission == Admission::Probe {
            lock(&self.entry).breaker.release();
        }
        if self.provider_admission == Admission::Probe {
            self.health
                .with_provider(self.provider, |p| p.breaker.release());
        }
    }
}
