//! One circuit breaker: a small state machine with an injected clock.
//!
//! ```text
//!            N consecutive failures, or failure rate ≥ R over the window
//!   Closed ───────────────────────────────────────────────────────────▶ Open
//!     ▲                                                                  │
//!     │ a probe succeeds                           the cool-down elapses │
//!     │                                                                  ▼
//!     └──────────────────────────── HalfOpen ◀───────────────────────────┘
//!                                      │  a probe fails: Open again, with
//!                                      └─ the cool-down doubled (capped)
//! ```
//!
//! Only `half_open_probes` requests pass while half-open; the rest are
//! turned away as if open, so a sick provider sees a trickle, not a flood.

use events::CircuitState;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Breaker settings (the `[gateway.breaker]` config section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Breakers and Retry-After cool-downs on (default). Off, every
    /// candidate is always tried, whatever its recent failures.
    pub enabled: bool,
    /// Consecutive failures that open a breaker (default 5).
    pub consecutive_failures: u32,
    /// Failure rate over the window that opens a breaker (default 0.5).
    pub failure_rate: f64,
    /// Requests the window must hold before the rate counts (default 20).
    pub min_requests: u32,
    /// The sliding window for the failure rate (default 30 s).
    pub window_ms: u64,
    /// Cool-down after the first trip (default 5 s); doubles on each trip in a row.
    pub cooldown_ms: u64,
    /// Longest cool-down (default 5 min).
    pub max_cooldown_ms: u64,
    /// Requests let through at once while half-open (default 1).
    pub half_open_probes: u32,
    /// An attempt waiting this many times its expected time for a first byte
    /// counts as stalled (default 4); `consecutive_failures` stalled attempts
    /// at once, with no answer since, open the breaker before they time out.
    pub stall_factor: f64,
    /// An attempt never counts as stalled sooner than this (default 1 s).
    pub stall_min_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window_ms: 30_000,
            cooldown_ms: 5_000,
            max_cooldown_ms: 300_000,
            half_open_probes: 1,
            stall_factor: 4.0,
            stall_min_ms: 1_000,
        }
    }
}

impl BreakerConfig {
    /// The cool-down after `trips` trips in a row (1 = first).
    fn cooldown(&self, trips: u32) -> Duration {
        let factor = 1u64 << trips.saturating_sub(1).min(20);
        Duration::from_millis(
            self.cooldown_ms
                .saturating_mul(factor)
                .min(self.max_cooldown_ms.max(self.cooldown_ms)),
        )
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Traffic flows.
    Closed,
    /// Traffic is turned away until `until`.
    Open { until: Instant },
    /// Up to the configured number of probes may pass.
    HalfOpen { probes_out: u32 },
}

impl State {
    /// The state as reported outside the breaker.
    pub fn circuit(&self) -> CircuitState {
        match self {
            State::Closed => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// What `admit` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A normal request.
    Pass,
    /// A half-open probe; its outcome decides the breaker.
    Probe,
    /// Turned away; try again after this long.
    Reject(Duration),
}

/// A state change worth logging and telling the other replicas (see [`super::fleet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Opened for this long.
    Opened(Duration),
    /// Cool-down over; probing.
    HalfOpened,
    /// A probe succeeded.
    Closed,
}

/// Failures and successes over a sliding window, in ten buckets.
#[derive(Debug, Clone)]
struct Window {
    bucket: Duration,
    /// (bucket number, successes, failures)
    slots: [(u64, u32, u32); 10],
}

impl Window {
    fn new(length: Duration) -> Window {
        Window {
            bucket: (length / 10).max(Duration::from_millis(1)),
            slots: [(u64::MAX, 0, 0); 10],
        }
    }

    fn slot_of(&self, age: Duration) -> u64 {
        (age.as_nanos() / self.bucket.as_nanos()) as u64
    }

    fn add(&mut self, age: Duration, failed: bool) {
        let n = self.slot_of(age);
        let slot = &mut self.slots[(n % 10) as usize];
        if slot.0 != n {
            *slot = (n, 0, 0);
        }
        if failed {
            slot.2 += 1;
        } else {
            slot.1 += 1;
        }
    }

    /// (requests, failures) in the window ending at `age`.
    fn counts(&self, age: Duration) -> (u32, u32) {
        let now = self.slot_of(age);
        self.slots
            .iter()
            .filter(|s| s.0 != u64::MAX && s.0 + 10 > now && s.0 <= now)
            .fold((0, 0), |(r, f), s| (r + s.1 + s.2, f + s.2))
    }

    fn clear(&mut self) {
        self.slots = [(u64::MAX, 0, 0); 10];
    }
}

/// One circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    consecutive: u32,
    /// Trips since the breaker last closed, for the cool-down backoff.
    trips_in_a_row: u32,
    /// Trips ever, for metrics.
    trips_total: u64,
    window: Window,
    born: Instant,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: &BreakerConfig, now: Instant) -> Breaker {
        Breaker {
            state: State::Closed,
            consecutive: 0,
            trips_in_a_row: 0,
            trips_total: 0,
            window: Window::new(Duration::from_millis(config.window_ms)),
            born: now,
        }
    }

    /// The state as of `now` (an elapsed cool-down reads as half-open).
    pub fn state(&self, now: Instant) -> State {
        match self.state {
            State::Open { until } if now >= until => State::HalfOpen { probes_out: 0 },
            state => state,
        }
    }

    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Trips ever.
    pub fn trips_total(&self) -> u64 {
        self.trips_total
    }

    /// The failure rate over the window, and the requests it covers.
    pub fn failure_rate(&self, now: Instant) -> (f64, u32) {
        let (requests, failures) = self.window.counts(now - self.born);
        let rate = if requests == 0 {
            0.0
        } else {
            f64::from(failures) / f64::from(requests)
        };
        (rate, requests)
    }

    /// Whether a request may go out now.
    pub fn admit(
        &mut self,
        config: &BreakerConfig,
        now: Instant,
    ) -> (Admission, Option<Transition>) {
        let mut transition = None;
        if let State::Open { until } = self.state {
            if now < until {
                return (Admission::Reject(until - now), None);
            }
            self.state = State::HalfOpen { probes_out: 0 };
            transition = Some(Transition::HalfOpened);
        }
        match &mut self.state {
            State::Closed => (Admission::Pass, transition),
            State::HalfOpen { probes_out } if *probes_out < config.half_open_probes.max(1) => {
                *probes_out += 1;
                (Admission::Probe, transition)
            }
            // Probes are out; their outcome comes soon. Ask again in a moment.
            _ => (Admission::Reject(Duration::from_millis(100)), transition),
        }
    }

    /// A probe ended without an outcome (the client went away): free its slot.
    pub fn release(&mut self) {
        if let State::HalfOpen { probes_out } = &mut self.state {
            *probes_out = probes_out.saturating_sub(1);
        }
    }

    /// A request admitted as `admission` succeeded.
    pub fn succeeded(&mut self, admission: Admission, now: Instant) -> Option<Transition> {
        self.window.add(now - self.born, false);
        self.consecutive = 0;
        if admission == Admission::Probe && matches!(self.state, State::HalfOpen { .. }) {
            self.state = State::Closed;
            self.trips_in_a_row = 0;
            self.window.clear();
            return Some(Transition::Closed);
        }
        None
    }

    /// A request admitted as `admission` failed.
    pub fn failed(
        &mut self,
        config: &BreakerConfig,
        admission: Admission,
        now: Instant,
    ) -> Option<Transition> {
        self.window.add(now - self.born, true);
        self.consecutive = self.consecutive.saturating_add(1);
        if !config.enabled {
            return None;
        }
        match self.state {
            State::HalfOpen { .. } if admission == Admission::Probe => Some(self.trip(config, now)),
            State::Closed if self.should_trip(config, now) => Some(self.trip(config, now)),
            _ => None,
        }
    }

    /// Opens the breaker now, whatever its counts (a bad provider key, say).
    pub fn trip(&mut self, config: &BreakerConfig, now: Instant) -> Transition {
        self.trips_in_a_row = self.trips_in_a_row.saturating_add(1);
        self.trips_total += 1;
        let cooldown = config.cooldown(self.trips_in_a_row);
        self.state = State::Open {
            until: now + cooldown,
        };
        Transition::Opened(cooldown)
    }

    /// Opens the breaker until `until` because another replica opened it:
    /// its own counts are untouched. Whether anything changed (a breaker
    /// already open longer stays as it is).
    pub fn open_until(&mut self, until: Instant) -> bool {
        match self.state {
            State::Open { until: mine } if mine >= until => false,
            _ => {
                self.state = State::Open { until };
                true
            }
        }
    }

    /// Closes the breaker because a probe succeeded on another replica.
    /// Whether it was not closed already.
    pub fn close(&mut self) -> bool {
        if self.state == State::Closed {
            return false;
        }
        self.state = State::Closed;
        self.consecutive = 0;
        self.trips_in_a_row = 0;
        self.window.clear();
        true
    }

    fn should_trip(&self, config: &BreakerConfig, now: Instant) -> bool {
        if self.consecutive >= config.consecutive_failures.max(1) {
            return true;
        }
        let (rate, requests) = self.failure_rate(now);
        requests >= config.min_requests.max(1) && rate >= config.failure_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_requests: 10,
            window_ms: 10_000,
            cooldown_ms: 1_000,
            max_cooldown_ms: 3_000,
            half_open_probes: 1,
            enabled: true,
            ..Default::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let c = config();
        let t0 = Instant::now();
        let mut b = Breaker::new(&c, t0);
        assert_eq!(b.failed(&c, Admission::Pass, t0), None);
        assert_eq!(b.failed(&c, Admission::Pass, t0), None);
        b.succeeded(Admission::Pass, t0);
        assert_eq!(b.failed(&c, Admission::Pass, t0), None);
        assert_eq!(b.failed(&c, Admission::Pass, t0), None);
        assert_eq!(
            b.failed(&c, Admission::Pass, t0),
            Some(Transition::Opened(ms(1_000)))
        );
        assert_eq!(b.admit(&c, t0 + ms(999)).0, Admission::Reject(ms(1)));
    }

    #[test]
    fn opens_on_the_failure_rate_once_the_window_holds_enough_requests() {
        let c = config();
        let t0 = Instant::now();
        let mut b = Breaker::new(&c, t0);
        // Alternate: never 3 in a row, but half of all requests fail.
        for i in 0..9 {
            let t = t0 + ms(i * 100);
            if i % 2 == 0 {
                assert_eq!(b.failed(&c, Admission::Pass, t), None, "request {i}");
            } else {
                b.succeeded(Admission::Pass, t);
            }
        }
        assert_eq!(b.failure_rate(t0 + ms(900)), (5.0 / 9.0, 9));
        assert_eq!(
            b.failed(&c, Admission::Pass, t0 + ms(900)),
            Some(Transition::Opened(ms(1_000)))
        );
    }

    #[test]
    fn old_failures_leave_the_window() {
        let c = config();
        let t0 = Instant::now();
        let mut b = Breaker::new(&c, t0);
        for _ in 0..2 {
            b.failed(&c, Admission::Pass, t0);
            b.succeeded(Admission::Pass, t0);
        }
        assert_eq!(b.failure_rate(t0).1, 4);
        assert_eq!(b.failure_rate(t0 + ms(10_500)), (0.0, 0));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_success_closes() {
        let c = config();
        let t0 = Instant::now();
        let mut b = Breaker::new(&c, t0);
        b.trip(&c, t0);
        let later = t0 + ms(1_000);
        assert_eq!(b.state(later), State::HalfOpen { probes_out: 0 });
        assert_eq!(
            b.admit(&c, later),
            (Admission::Probe, Some(Transition::HalfOpened))
        );
        assert!(matches!(b.admit(&c, later).0, Admission::Reject(_)));
        // A normal request admitted before the trip succeeding does not close it.
        assert_eq!(b.succeeded(Admission::Pass, later), None);
        assert_eq!(
            b.succeeded(Admission::Probe, later),
            Some(Transition::Closed)
        );
        assert_eq!(b.admit(&c, later).0, Admission::Pass);
    }

    #[test]
    fn failed_probes_back_off_up_to_the_cap_and_closing_resets_it() {
        let c = config();
        let t0 = Instant::now();
        let mut b = Breaker::new(&c, t0);
        assert_eq!(b.trip(&c, t0), Transition::Opened(ms(1_000)));
        let mut now = t0;
        for expected in [2_000, 3_000, 3_000] {
            now += ms(3_000);
            assert_eq!(b.admit(&c, now).0, Admission::Probe);
            assert_eq!(
                b.failed(&c, Admission::Probe, now),
                Some(Transition::Opened(ms(expected)))
            );
        }
        now += ms(3_000);
        b.admit(&c, now);
        b.succeeded(Admission::Probe, now);
        assert_eq!(b.trip(&c, now), Transition::Opened(ms(1_000)));
        assert_eq!(b.trips_total(), 5);
    }

    #[test]
    fn a_released_probe_frees_its_slot() {
        let c = config();
        let t0 = Instant::now();
        let mut b = Breaker::new(&c, t0);
        b.trip(&c, t0);
        let later = t0 + ms(1_000);
        assert_eq!(b.admit(&c, later).0, Admission::Probe);
        b.release();
        assert_eq!(b.admit(&c, later).0, Admission::Probe);
    }
}
