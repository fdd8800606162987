//! The records this process appended last, kept in memory so that the
//! consumers at the end of the log (in `up`: the ledger, the exporter, the
//! control plane and the gateway's access follower) read each new record
//! from here instead of each asking SQLite's thread for it.

use std::collections::VecDeque;

use crate::Record;

/// Records the tail keeps at most …
const RECORDS: usize = 4_096;
/// … and bytes of payload (past them the oldest go; a consumer that far
/// behind reads SQLite, as it would anyway).
const BYTES: usize = 8 * 1024 * 1024;

/// Consecutive records, the last this process appended: a consumer whose
/// next record is here has everything before it, so it may read on from
/// here without a gap.
#[derive(Debug, Default)]
pub(super) struct Tail {
    records: VecDeque<Record>,
    bytes: usize,
}

impl Tail {
    /// Adds records just committed, in log order and consecutive. A record
    /// that does not follow the last one kept (another process appended in
    /// between) starts the tail over, so it never hides a record.
    pub(super) fn extend(&mut self, records: impl IntoIterator<Item = Record>) {
        for record in records {
            if self
                .records
                .back()
                .is_some_and(|last| last.seq + 1 != record.seq)
            {
                self.clear();
            }
            self.bytes += record.payload.len();
            self.records.push_back(record);
        }
        while self.records.len() > RECORDS || self.bytes > BYTES {
            let Some(old) = self.records.pop_front() else {
                break;
            };
            self.bytes -= old.payload.len();
        }
    }

    /// Forgets every record: after an append whose outcome is unknown (it
    /// failed, perhaps after its statement committed), consumers read the
    /// file, which has whatever did commit.
    pub(super) fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }

    /// The records after `cursor`, up to `limit` of them and, past the
    /// first, `max_bytes` of payload; `None` when the tail does not hold the
    /// record right after `cursor` (read the log instead). An empty answer
    /// means `cursor` is the last record this process appended.
    pub(super) fn after(&self, cursor: u64, limit: usize, max_bytes: usize) -> Option<Vec<Record>> {
        let first = self.records.front()?.seq;
        let last = self.records.back()?.seq;
        if cursor.checked_add(1)? < first || cursor > last {
            return None;
        }
        let start = usize::try_from(cursor + 1 - first).ok()?;
        let mut before = 0;
        Some(
            self.records
                .iter()
                .skip(start)
                .take(limit)
                .take_while(|r| {
                    let fits = before < max_bytes;
                    before += r.payload.len();
                    fits
                })
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, bytes: usize) -> Record {
        Record {
            seq,
            subject: "s".into(),
            payload: vec![0u8; bytes].into(),
        }
    }

    fn seqs(records: Option<Vec<Record>>) -> Option<Vec<u64>> {
        records.map(|r| r.iter().map(|r| r.seq).collect())
    }

    #[test]
    fn it_answers_only_without_a_gap() {
        let mut tail = Tail::default();
        assert_eq!(seqs(tail.after(0, 10, 100)), None, "empty: read the log");
        tail.extend([record(5, 1), record(6, 1), record(7, 1)]);
        assert_eq!(seqs(tail.after(3, 10, 100)), None, "record 4 is not here");
        assert_eq!(seqs(tail.after(4, 10, 100)), Some(vec![5, 6, 7]));
        assert_eq!(seqs(tail.after(5, 1, 100)), Some(vec![6]));
        assert_eq!(seqs(tail.after(7, 10, 100)), Some(vec![]), "at the end");
        assert_eq!(seqs(tail.after(8, 10, 100)), None, "past what it holds");
        // Another process appended 8 and 9: the tail starts over at 10.
        tail.extend([record(10, 1)]);
        assert_eq!(
            seqs(tail.after(7, 10, 100)),
            None,
            "8 and 9 are in the log only"
        );
        assert_eq!(seqs(tail.after(9, 10, 100)), Some(vec![10]));
        tail.clear();
        assert_eq!(seqs(tail.after(9, 10, 100)), None, "cleared: read the log");
    }

    #[test]
    fn it_is_bounded_and_reads_are_cut_by_bytes() {
        let mut tail = Tail::default();
        tail.extend((1..=RECORDS as u64 + 10).map(|seq| record(seq, 1)));
        assert_eq!(seqs(tail.after(0, 1, 100)), None, "the oldest went");
        assert_eq!(seqs(tail.after(10, 1, 100)), Some(vec![11]));
        let mut tail = Tail::default();
        tail.extend((1..=5).map(|seq| record(seq, 2 * 1024 * 1024)));
        assert_eq!(
            seqs(tail.after(0, 10, usize::MAX)),
            None,
            "10 MiB > 8: the first went"
        );
        assert_eq!(
            seqs(tail.after(1, 10, 5 * 1024 * 1024)),
            Some(vec![2, 3, 4]),
            "a read stops after the record that crosses its bytes"
        );
        assert_eq!(
            seqs(tail.after(1, 10, 1)),
            Some(vec![2]),
            "but takes one at least"
        );
    }
}
