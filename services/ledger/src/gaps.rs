//! Lost usage, found: every request that reached a provider attempt took a
//! number in its gateway's sequence (1, 2, 3…) and writes exactly one usage
//! event, so a number with no event in the log is an event that did not
//! arrive. A number can also be missing only for a while: its request is
//! still running (a long stream) while later ones already finished. Since a
//! number is taken before every later one, once an event with a higher
//! number is older than the longest a request may run (`grace`), every
//! smaller number's request must have ended: if its event is still absent
//! it is lost (or stuck in a gateway's journal, which the gateways' status
//! tells).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// The numbers seen of one gateway's sequence, as disjoint ranges (so a
/// billion contiguous events cost one entry), each with the time of its
/// first event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRanges {
    /// start → (end inclusive, time of the event numbered `start`).
    ranges: BTreeMap<u64, (u64, DateTime<Utc>)>,
    /// Events counted, repeats of a number included.
    pub events: u64,
}

/// A run of missing numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub first: u64,
    pub last: u64,
    /// When the event just after the gap happened.
    pub after_at: DateTime<Utc>,
}

impl Gap {
    /// How many numbers are missing.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: a gap has at least one number.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the requests behind it must have ended by `now`.
    pub fn settled(&self, now: DateTime<Utc>, grace: chrono::Duration) -> bool {
        now - self.after_at > grace
    }
}

impl SeqRanges {
    /// Notes the event numbered `seq`, which happened `at`.
    pub fn insert(&mut self, seq: u64, at: DateTime<Utc>) {
        self.events += 1;
        let before = self
            .ranges
            .range(..=seq)
            .next_back()
            .map(|(&s, &(e, t))| (s, e, t));
        if let Some((_, end, _)) = before {
            if seq <= end {
                return;
            }
        }
        let after = seq
            .checked_add(1)
            .and_then(|next| self.ranges.get(&next).copied());
        match (before.filter(|&(_, end, _)| end + 1 == seq), after) {
            (Some((start, _, t)), Some((end, _))) => {
                self.ranges.remove(&(seq + 1));
                self.ranges.insert(start, (end, t));
            }
            (Some((start, _, t)), None) => {
                self.ranges.insert(start, (seq, t));
            }
            (None, Some((end, _))) => {
                self.ranges.remove(&(seq + 1));
                self.ranges.insert(seq, (end, at));
            }
            (None, None) => {
                self.ranges.insert(seq, (seq, at));
            }
        }
    }

    /// The highest number seen.
    pub fn max(&self) -> u64 {
        self.ranges.values().next_back().map_or(0, |&(end, _)| end)
    }

    /// Every run of missing numbers below the highest seen (numbering starts at 1).
    pub fn gaps(&self) -> Vec<Gap> {
        let mut gaps = Vec::new();
        let mut expected = 1;
        for (&start, &(end, at)) in &self.ranges {
            if start > expected {
                gaps.push(Gap {
                    first: expected,
                    last: start - 1,
                    after_at: at,
                });
            }
            expected = end + 1;
        }
        gaps
    }
}

/// Short text for a list of gaps: `12, 40-43`.
pub fn describe(gaps: &[Gap]) -> String {
    let parts: Vec<String> = gaps
        .iter()
        .take(20)
        .map(|g| {
            if g.first == g.last {
                g.first.to_string()
            } else {
                format!("{}-{}", g.first, g.last)
            }
        })
        .collect();
    let more = gaps.len().saturating_sub(20);
    if more > 0 {
        format!("{} and {more} more runs", parts.join(", "))
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_in_any_order_and_gaps_are_what_is_missing() {
        let t0 = Utc::now() - chrono::Duration::minutes(30);
        let mut seen = SeqRanges::default();
        for seq in [5, 1, 2, 9, 4, 10, 7] {
            seen.insert(seq, t0 + chrono::Duration::seconds(seq as i64));
        }
        seen.insert(4, t0); // a repeat
        assert_eq!(seen.max(), 10);
        assert_eq!(seen.events, 8);
        let gaps = seen.gaps();
        let runs: Vec<(u64, u64)> = gaps.iter().map(|g| (g.first, g.last)).collect();
        assert_eq!(runs, [(3, 3), (6, 6), (8, 8)]);
        assert_eq!(gaps[0].after_at, t0 + chrono::Duration::seconds(4));
        assert_eq!(describe(&gaps), "3, 6, 8");
        for seq in [3, 6, 8] {
            seen.insert(seq, t0);
        }
        assert!(seen.gaps().is_empty());
        assert_eq!(seen.ranges.len(), 1);
        // A number missing from the start counts too.
        let mut late = SeqRanges::default();
        late.insert(3, Utc::now());
        let gap = &late.gaps()[0];
        assert_eq!((gap.first, gap.last, gap.len()), (1, 2, 2));
        // Settled only once the later event is older than the grace.
        assert!(!gap.settled(Utc::now(), chrono::Duration::minutes(6)));
        assert!(gap.settled(
            Utc::now() + chrono::Duration::minutes(7),
            chrono::Duration::minutes(6)
        ));
    }
}
