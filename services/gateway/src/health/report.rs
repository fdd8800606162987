//! What `GET /v1/router/health` shows and `/metrics` exports: one snapshot,
//! two renderings, so the two can never disagree.

use std::fmt::Write;
use std::time::Instant;

use catalog::ProviderId;
use serde::Serialize;

use super::breaker::State;
use super::fleet::Target;
use super::{Health, Monitored};
use events::CircuitState;

/// The content type of Prometheus' text format, which `/metrics` serves.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A provider's breaker.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderReport {
    /// The provider.
    pub provider: ProviderId,
    /// The breaker's state.
    pub state: CircuitState,
    /// Connection-level failures in a row.
    pub consecutive_failures: u32,
    /// Milliseconds until an open breaker lets a probe through.
    pub open_for_ms: Option<u64>,
    /// Trips since the gateway started.
    pub trips: u64,
    /// The replica (gateway id) that opened the breaker, while it is not closed.
    pub tripped_by: Option<String>,
}

/// One model's breaker, cool-down, counts and observed speed.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// The catalog model id.
    pub model: String,
    /// Its provider.
    pub provider: ProviderId,
    /// The breaker's state.
    pub state: CircuitState,
    /// Failures over the breaker's window, 0 to 1.
    pub failure_rate: f64,
    /// Attempts in the breaker's window.
    pub window_requests: u32,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Milliseconds until an open breaker lets a probe through.
    pub open_for_ms: Option<u64>,
    /// Milliseconds left of a Retry-After cool-down.
    pub cooling_down_for_ms: Option<u64>,
    /// Trips since the gateway started.
    pub trips: u64,
    /// The replica (gateway id) that opened the breaker, while it is not closed.
    pub tripped_by: Option<String>,
    /// Time to first token, EWMA (seeded from the catalog).
    pub ttft_ms: f64,
    /// Output tokens per second, EWMA (seeded from the catalog).
    pub output_tokens_per_s: f64,
    /// Attempts that succeeded since start.
    pub succeeded: u64,
    /// Attempts that failed since start.
    pub failed: u64,
    /// Attempts answered 429 with Retry-After since start.
    pub rate_limited: u64,
    /// Attempts skipped (breaker open or cooling down) since start.
    pub skipped: u64,
}

/// Everything at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `router.health`.
    pub object: &'static str,
    /// Whether breakers are on.
    pub breakers_enabled: bool,
    /// This replica's gateway id, when breakers are shared with others.
    pub replica: Option<String>,
    /// Provider-wide breakers.
    pub providers: Vec<ProviderReport>,
    /// Per-model health, in catalog order.
    pub models: Vec<ModelReport>,
}

impl Health {
    /// Who opened a breaker in `state`, unless it is closed.
    fn tripped(&self, target: &Target, state: State) -> Option<String> {
        match state {
            State::Closed => None,
            _ => self.tripper(target),
        }
    }
}

fn open_for(state: State, now: Instant) -> Option<u64> {
    match state {
        State::Open { until } => Some(until.saturating_duration_since(now).as_millis() as u64),
        _ => None,
    }
}

impl Health {
    /// The health of `models` (and of their providers) now.
    pub fn report<'a>(&self, models: impl IntoIterator<Item = &'a dyn Monitored>) -> Report {
        let now = Instant::now();
        let mut providers: Vec<ProviderId> = Vec::new();
        let models: Vec<ModelReport> = models
            .into_iter()
            .map(|model| {
                if !providers.contains(&model.provider()) {
                    providers.push(model.provider());
                }
                self.model_report(model, now)
            })
            .collect();
        let providers = providers
            .into_iter()
            .map(|provider| {
                self.with_provider(provider, |p| {
                    let state = p.breaker.state(now);
                    ProviderReport {
                        provider,
                        state: state.circuit(),
                        consecutive_failures: p.breaker.consecutive_failures(),
                        open_for_ms: open_for(state, now),
                        trips: p.breaker.trips_total(),
                        tripped_by: self.tripped(&Target::Provider { provider }, state),
                    }
                })
            })
            .collect();
        Report {
            object: "router.health",
            breakers_enabled: self.inner.breaker.enabled,
            replica: self.inner.sharing.get().map(|s| s.replica.clone()),
            providers,
            models,
        }
    }

    fn model_report(&self, model: &dyn Monitored, now: Instant) -> ModelReport {
        let entry = self.entry(model);
        let health = Self::lock_fresh(&entry, model);
        let state = health.breaker.state(now);
        let (failure_rate, window_requests) = health.breaker.failure_rate(now);
        let speed = health.latency.speed(&self.inner.latency, now);
        ModelReport {
            model: model.id().to_owned(),
            provider: model.provider(),
            state: state.circuit(),
            failure_rate,
            window_requests,
            consecutive_failures: health.breaker.consecutive_failures(),
            open_for_ms: open_for(state, now),
            cooling_down_for_ms: health
                .cooling_until
                .filter(|&u| u > now)
                .map(|u| (u - now).as_millis() as u64),
            trips: health.breaker.trips_total(),
            tripped_by: self.tripped(
                &Target::Model {
                    id: model.id().to_owned(),
                },
                state,
            ),
            ttft_ms: speed.ttft_ms,
            output_tokens_per_s: speed.output_tokens_per_s,
            succeeded: health.counts.succeeded,
            failed: health.counts.failed,
            rate_limited: health.counts.rate_limited,
            skipped: health.counts.skipped,
        }
    }
}

impl Report {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let model_rows = |f: &dyn Fn(&ModelReport) -> f64| -> Vec<(String, f64)> {
            self.models
                .iter()
                .map(|m| {
                    let labels =
                        format!("provider=\"{}\",model=\"{}\"", m.provider, escape(&m.model));
                    (labels, f(m))
                })
                .collect()
        };
        family(
            "modelrouter_breaker_state",
            "gauge",
            "Circuit breaker per model: 0 closed, 1 half-open, 2 open.",
            model_rows(&|m| f64::from(gauge(m.state))),
        );
        family(
            "modelrouter_breaker_failure_rate",
            "gauge",
            "Failed share of attempts over the breaker window.",
            model_rows(&|m| m.failure_rate),
        );
        family(
            "modelrouter_breaker_trips_total",
            "counter",
            "Times the model's breaker opened.",
            model_rows(&|m| m.trips as f64),
        );
        let outcomes: [(&str, Count); 4] = [
            ("success", |m| m.succeeded),
            ("failure", |m| m.failed),
            ("rate_limited", |m| m.rate_limited),
            ("skipped", |m| m.skipped),
        ];
        let attempts = outcomes
            .iter()
            .flat_map(|(outcome, count)| {
                self.models.iter().map(move |m| {
                    let labels = format!(
                        "provider=\"{}\",model=\"{}\",outcome=\"{outcome}\"",
                        m.provider,
                        escape(&m.model)
                    );
                    (labels, count(m) as f64)
                })
            })
            .collect();
        family(
            "modelrouter_upstream_attempts_total",
            "counter",
            "Attempts at a model by outcome (skipped: breaker open or cooling down).",
            attempts,
        );
        family(
            "modelrouter_ttft_ms",
            "gauge",
            "Time to first token, EWMA seeded from the catalog.",
            model_rows(&|m| m.ttft_ms),
        );
        family(
            "modelrouter_output_tokens_per_second",
            "gauge",
            "Output tokens per second, EWMA seeded from the catalog.",
            model_rows(&|m| m.output_tokens_per_s),
        );
        family(
            "modelrouter_provider_breaker_state",
            "gauge",
            "Provider-wide circuit breaker: 0 closed, 1 half-open, 2 open.",
            self.providers
                .iter()
                .map(|p| {
                    (
                        format!("provider=\"{}\"", p.provider),
                        f64::from(gauge(p.state)),
                    )
                })
                .collect(),
        );
        out
    }
}

/// Reads one attempt counter of a model.
type Count = fn(&ModelReport) -> u64;

fn gauge(state: CircuitState) -> u8 {
    match state {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    }
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
