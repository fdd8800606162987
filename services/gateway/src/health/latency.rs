//! Observed speed per model, for `prefer: fast`: exponentially weighted
//! moving averages of time to first token and output tokens per second.
//!
//! Each average starts at the catalog's figure and, when a model gets no
//! traffic, drifts back to it with a configurable half-life. Without the drift
//! a provider that was slow once would never be tried again by `fast`, and
//! so would never show that it recovered.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// Latency tracking settings (the `[gateway.latency]` config section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// Weight of a new observation (default 0.3).
    pub ewma_alpha: f64,
    /// Time for an observed deviation from the catalog figure to halve
    /// without new observations (default 60 s).
    pub decay_half_life_ms: u64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            ewma_alpha: 0.3,
            decay_half_life_ms: 60_000,
        }
    }
}

/// One moving average that decays toward its seed.
#[derive(Debug, Clone, Copy)]
pub struct Ewma {
    seed: f64,
    value: f64,
    at: Option<Instant>,
}

impl Ewma {
    /// An average that reads `seed` until observed.
    pub fn new(seed: f64) -> Ewma {
        Ewma {
            seed,
            value: seed,
            at: None,
        }
    }

    /// The current estimate: the last average, pulled toward the seed by its age.
    pub fn get(&self, config: &LatencyConfig, now: Instant) -> f64 {
        let Some(at) = self.at else {
            return self.seed;
        };
        let half_life = Duration::from_millis(config.decay_half_life_ms.max(1)).as_secs_f64();
        let weight = 0.5f64.powf(now.saturating_duration_since(at).as_secs_f64() / half_life);
        self.seed + (self.value - self.seed) * weight
    }

    /// Folds in one observation.
    pub fn observe(&mut self, config: &LatencyConfig, sample: f64, now: Instant) {
        if !sample.is_finite() || sample < 0.0 {
            return;
        }
        let alpha = config.ewma_alpha.clamp(0.0, 1.0);
        let current = self.get(config, now);
        self.value = current + alpha * (sample - current);
        self.at = Some(now);
    }

    /// Moves the seed (the catalog changed); observations keep their pull.
    pub fn reseed(&mut self, seed: f64) {
        if self.at.is_none() {
            self.value = seed;
        }
        self.seed = seed;
    }
}

/// What one model's speed is believed to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    /// Time to first token, in milliseconds.
    pub ttft_ms: f64,
    /// Output tokens per second once generating.
    pub output_tokens_per_s: f64,
}

impl Speed {
    /// The catalog's figures for `model`, before any traffic.
    pub fn of_catalog(model: &catalog::Model) -> Speed {
        Speed {
            ttft_ms: f64::from(model.latency.ttft_ms),
            output_tokens_per_s: f64::from(model.latency.output_tokens_per_s.max(1)),
        }
    }

    /// Expected milliseconds to produce `output_tokens`.
    pub fn expected_ms(&self, output_tokens: u64) -> f64 {
        self.ttft_ms + output_tokens as f64 * 1000.0 / self.output_tokens_per_s.max(0.001)
    }
}

/// The two averages of one model.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    ttft_ms: Ewma,
    output_tokens_per_s: Ewma,
}

impl Latency {
    /// Seeded with the catalog's figures.
    pub fn new(seed: Speed) -> Latency {
        Latency {
            ttft_ms: Ewma::new(seed.ttft_ms),
            output_tokens_per_s: Ewma::new(seed.output_tokens_per_s),
        }
    }

    /// Follows a catalog change.
    pub fn reseed(&mut self, seed: Speed) {
        self.ttft_ms.reseed(seed.ttft_ms);
        self.output_tokens_per_s.reseed(seed.output_tokens_per_s);
    }

    /// The estimate as of `now`.
    pub fn speed(&self, config: &LatencyConfig, now: Instant) -> Speed {
        Speed {
            ttft_ms: self.ttft_ms.get(config, now),
            output_tokens_per_s: self.output_tokens_per_s.get(config, now),
        }
    }

    /// A stream: the first token after `ttft`, then `output_tokens` over `generating`.
    pub fn observe_stream(
        &mut self,
        config: &LatencyConfig,
        ttft: Duration,
        output_tokens: u64,
        generating: Duration,
        now: Instant,
    ) {
        self.ttft_ms.observe(config, millis(ttft), now);
        // Too few tokens or too short a span say more about chunking than speed.
        if output_tokens >= 16 && generating >= Duration::from_millis(20) {
            let rate = output_tokens as f64 / generating.as_secs_f64();
            self.output_tokens_per_s.observe(config, rate, now);
        }
    }

    /// A whole response after `elapsed`: its generation time at the believed
    /// speed is taken off, and the rest counts as time to first token.
    pub fn observe_whole(
        &mut self,
        config: &LatencyConfig,
        elapsed: Duration,
        output_tokens: u64,
        now: Instant,
    ) {
        let speed = self.speed(config, now);
        let generating = output_tokens as f64 * 1000.0 / speed.output_tokens_per_s.max(0.001);
        self.ttft_ms
            .observe(config, (millis(elapsed) - generating).max(0.0), now);
    }

    /// A request that got no first token within `waited` (a timeout or an error
    /// after a wait): the first token takes at least that long.
    pub fn observe_wait(&mut self, config: &LatencyConfig, waited: Duration, now: Instant) {
        let current = self.ttft_ms.get(config, now);
        if millis(waited) > current {
            self.ttft_ms.observe(config, millis(waited), now);
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: LatencyConfig = LatencyConfig {
        ewma_alpha: 0.5,
        decay_half_life_ms: 1_000,
    };

    #[test]
    fn observations_pull_the_average_and_age_returns_it_to_the_seed() {
        let t0 = Instant::now();
        let mut e = Ewma::new(100.0);
        assert_eq!(e.get(&CONFIG, t0), 100.0);
        e.observe(&CONFIG, 300.0, t0);
        assert_eq!(e.get(&CONFIG, t0), 200.0);
        e.observe(&CONFIG, 300.0, t0);
        assert_eq!(e.get(&CONFIG, t0), 250.0);
        // One half-life later the deviation (150) has halved.
        assert!((e.get(&CONFIG, t0 + Duration::from_secs(1)) - 175.0).abs() < 1e-9);
        assert!((e.get(&CONFIG, t0 + Duration::from_secs(30)) - 100.0).abs() < 1e-3);
    }

    #[test]
    fn a_whole_response_counts_what_generation_does_not_explain() {
        let t0 = Instant::now();
        let mut l = Latency::new(Speed {
            ttft_ms: 100.0,
            output_tokens_per_s: 100.0,
        });
        // 100 tokens at 100/s = 1000 ms; 1500 ms elapsed → 500 ms to first token.
        l.observe_whole(&CONFIG, Duration::from_millis(1_500), 100, t0);
        assert_eq!(l.speed(&CONFIG, t0).ttft_ms, 300.0);
        l.observe_stream(
            &CONFIG,
            Duration::from_millis(300),
            100,
            Duration::from_millis(500),
            t0,
        );
        assert_eq!(l.speed(&CONFIG, t0).output_tokens_per_s, 150.0);
    }

    #[test]
    fn a_wait_only_ever_raises_the_estimate() {
        let t0 = Instant::now();
        let mut l = Latency::new(Speed {
            ttft_ms: 100.0,
            output_tokens_per_s: 50.0,
        });
        l.observe_wait(&CONFIG, Duration::from_millis(50), t0);
        assert_eq!(l.speed(&CONFIG, t0).ttft_ms, 100.0);
        l.observe_wait(&CONFIG, Duration::from_millis(900), t0);
        assert_eq!(l.speed(&CONFIG, t0).ttft_ms, 500.0);
    }
}
