//! Attempts still waiting for their first byte, to notice a provider that
//! hangs long before the first of them times out.
//!
//! Failures teach a breaker only when they end, and a hung provider's
//! requests end at the first-byte timeout (60 s by default): until then every
//! new request would join the queue. So an attempt that has waited several
//! times longer than expected counts as stalled, and enough stalled attempts
//! at once, with no answer from the model since they began, open its breaker.

use std::collections::BTreeSet;
use std::time::Instant;

/// The waiting attempts of one model.
#[derive(Debug, Default)]
pub struct Waiting {
    /// (stalled after, attempt id, started), soonest stall first.
    attempts: BTreeSet<(Instant, u64, Instant)>,
    /// When the model last answered (a whole response or a first stream chunk).
    last_answer: Option<Instant>,
}

impl Waiting {
    /// Attempt `id`, started at `started`, counts as stalled from `stalls_at`.
    pub fn enter(&mut self, id: u64, started: Instant, stalls_at: Instant) {
        self.attempts.insert((stalls_at, id, started));
    }

    /// The attempt got its answer, or ended without one.
    pub fn leave(&mut self, id: u64, started: Instant, stalls_at: Instant) {
        self.attempts.remove(&(stalls_at, id, started));
    }

    /// The model answered at `now`.
    pub fn answered(&mut self, now: Instant) {
        self.last_answer = Some(self.last_answer.map_or(now, |t| t.max(now)));
    }

    /// Whether at least `n` attempts are stalled at `now` and the model has
    /// not answered since the earliest of them started.
    pub fn stalled(&self, n: u32, now: Instant) -> bool {
        let stalled: Vec<Instant> = self
            .attempts
            .iter()
            .take_while(|(stalls_at, ..)| *stalls_at <= now)
            .take(n.max(1) as usize)
            .map(|(_, _, started)| *started)
            .collect();
        if stalled.len() < n.max(1) as usize {
            return false;
        }
        let earliest = stalled.iter().min().copied().unwrap_or(now);
        self.last_answer.is_none_or(|answer| answer < earliest)
    }

    /// How many attempts are waiting.
    pub fn len(&self) -> usize {
        self.attempts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn enough_stalled_attempts_with_no_answer_since_count_as_a_hang() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Waiting::default();
        for id in 0..3 {
            w.enter(id, t0, t0 + s);
        }
        assert!(!w.stalled(3, t0 + s / 2), "not yet overdue");
        assert!(w.stalled(3, t0 + s));
        assert!(!w.stalled(4, t0 + s), "too few");
        w.leave(0, t0, t0 + s);
        assert!(!w.stalled(3, t0 + s));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn an_answer_after_they_started_means_the_model_is_slow_not_hung() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Waiting::default();
        w.answered(t0 - s);
        w.enter(1, t0, t0 + s);
        w.enter(2, t0, t0 + s);
        assert!(w.stalled(2, t0 + s));
        w.answered(t0 + s / 2);
        assert!(!w.stalled(2, t0 + s));
    }
}
