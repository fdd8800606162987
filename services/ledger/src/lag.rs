//! How far the ledger trails the gateways: for every event folded, the time
//! from the event (the gateway stamps it when the request ends, before its
//! publisher appends it) to the publish of its account's new state, which
//! is when a gateway's credit and daily-limit checks can see it. Kept as a
//! Prometheus histogram, beside counts of events and batches.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram's buckets, in milliseconds.
pub const BUCKETS_MS: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// The ledger's fold counters and lag histogram.
#[derive(Debug, Default)]
pub struct Lag {
    /// Observations at or under each bound (not cumulative), then above all.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
    events: AtomicU64,
    batches: AtomicU64,
}

impl Lag {
    /// Notes one batch and how long after its events their states were
    /// published.
    pub fn batch(&self, lags: impl IntoIterator<Item = Duration>) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        for lag in lags {
            let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
            let slot = BUCKETS_MS
                .iter()
                .position(|&bound| micros <= bound * 1_000)
                .unwrap_or(BUCKETS_MS.len());
            self.buckets[slot].fetch_add(1, Ordering::Relaxed);
            self.sum_micros.fetch_add(micros, Ordering::Relaxed);
            self.events.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events folded so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The counters in Prometheus' text format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let events = self.events();
        let _ = writeln!(out, "# HELP modelrouter_ledger_events_folded_total Events the ledger applied or skipped as repeats.");
        let _ = writeln!(out, "# TYPE modelrouter_ledger_events_folded_total counter");
        let _ = writeln!(out, "modelrouter_ledger_events_folded_total {events}");
        let _ = writeln!(
            out,
            "# HELP modelrouter_ledger_batches_total Transactions the ledger committed."
        );
        let _ = writeln!(out, "# TYPE modelrouter_ledger_batches_total counter");
        let _ = writeln!(
            out,
            "modelrouter_ledger_batches_total {}",
            self.batches.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP modelrouter_ledger_lag_seconds From an event to the publish of its account's state."
        );
        let _ = writeln!(out, "# TYPE modelrouter_ledger_lag_seconds histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "modelrouter_ledger_lag_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "modelrouter_ledger_lag_seconds_bucket{{le=\"+Inf\"}} {events}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "modelrouter_ledger_lag_seconds_sum {sum}");
        let _ = writeln!(out, "modelrouter_ledger_lag_seconds_count {events}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_land_in_their_buckets_and_the_histogram_is_cumulative() {
        let lag = Lag::default();
        lag.batch([
            Duration::from_micros(400),
            Duration::from_millis(1),
            Duration::from_micros(1_500),
            Duration::from_millis(700),
            Duration::from_secs(400),
        ]);
        lag.batch([]);
        let text = lag.to_prometheus();
        for line in [
            "modelrouter_ledger_events_folded_total 5",
            "modelrouter_ledger_batches_total 2",
            "modelrouter_ledger_lag_seconds_bucket{le=\"0.001\"} 2",
            "modelrouter_ledger_lag_seconds_bucket{le=\"0.002\"} 3",
            "modelrouter_ledger_lag_seconds_bucket{le=\"0.5\"} 3",
            "modelrouter_ledger_lag_seconds_bucket{le=\"1\"} 4",
            "modelrouter_ledger_lag_seconds_bucket{le=\"300\"} 4",
            "modelrouter_ledger_lag_seconds_bucket{le=\"+Inf\"} 5",
            "modelrouter_ledger_lag_seconds_count 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
