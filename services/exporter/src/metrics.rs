//! The exporter's own counters, for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters since start, and the backlog now.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Spans the backends took.
    pub exported: AtomicU64,
    /// Spans a backend refused (dropped).
    pub rejected: AtomicU64,
    /// Requests dropped from a full backlog.
    pub dropped_overflow: AtomicU64,
    /// Export calls that failed and will be retried.
    pub retries: AtomicU64,
    /// Requests waiting, over every destination.
    pub backlog: AtomicI64,
    /// Destinations delivered to.
    pub destinations: AtomicI64,
    /// Usage events read from the log for accounts' destinations (none are
    /// decoded while no destination exists).
    pub events_read: AtomicU64,
    following: AtomicBool,
}

impl Metrics {
    pub(crate) fn set_following(&self, on: bool) {
        self.following.store(on, Relaxed);
    }

    /// Whether the follower has its consumer open.
    pub fn following(&self) -> bool {
        self.following.load(Relaxed)
    }

    /// Prometheus text format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(1024);
        let _ = writeln!(
            out,
            "# HELP modelrouter_exporter_spans_total Spans by what became of them."
        );
        let _ = writeln!(out, "# TYPE modelrouter_exporter_spans_total counter");
        for (outcome, v) in [("exported", &self.exported), ("rejected", &self.rejected)] {
            let _ = writeln!(
                out,
                "modelrouter_exporter_spans_total{{outcome=\"{outcome}\"}} {}",
                v.load(Relaxed)
            );
        }
        let lines = [
            (
                "modelrouter_exporter_requests_dropped_total",
                "counter",
                "Requests dropped from a full backlog.",
                self.dropped_overflow.load(Relaxed) as i64,
            ),
            (
                "modelrouter_exporter_retries_total",
                "counter",
                "Export calls that failed and are retried.",
                self.retries.load(Relaxed) as i64,
            ),
            (
                "modelrouter_exporter_backlog_requests",
                "gauge",
                "Requests waiting for delivery, all destinations.",
                self.backlog.load(Relaxed),
            ),
            (
                "modelrouter_exporter_destinations",
                "gauge",
                "Destinations delivered to.",
                self.destinations.load(Relaxed),
            ),
            (
                "modelrouter_exporter_events_read_total",
                "counter",
                "Usage events read from the event log.",
                self.events_read.load(Relaxed) as i64,
            ),
        ];
        for (name, kind, help, value) in lines {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
