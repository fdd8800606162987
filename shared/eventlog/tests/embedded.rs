//! What only the embedded log does, attacked: consumers read recent records
//! from memory (never past one another process appended), and acks are
//! written a little later (a reopened consumer never starts before its last
//! written ack, nor after a record it did not ack).

mod common;

use std::sync::Arc;
use std::time::Duration;

use eventlog::sqlite::SqliteLog;
use eventlog::{EventLog, Outgoing};

const WAIT: Duration = Duration::from_secs(10);

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("eventlog-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

async fn append(log: &SqliteLog, ids: impl IntoIterator<Item = String>) {
    let ids: Vec<String> = ids.into_iter().collect();
    let items: Vec<Outgoing> = ids
        .iter()
        .map(|id| Outgoing {
            subject: "events.usage",
            id,
            payload: id.as_bytes(),
        })
        .collect();
    log.append_batch(&items).await.unwrap();
}

/// Reads `n` records, acking each; returns their payloads.
async fn read(consumer: &mut dyn eventlog::Consumer, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let d = consumer.next(WAIT).await.unwrap().expect("a record");
        seen.push(String::from_utf8(d.record.payload.to_vec()).unwrap());
        d.ack().await.unwrap();
    }
    seen
}

fn names(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn records_another_process_appended_are_read_in_their_place() {
    let dir = temp_dir();
    let path = dir.0.join("events.db");
    let ours = SqliteLog::open(&path).await.unwrap();
    let theirs = SqliteLog::open(&path).await.unwrap();
    let mut consumer = ours.consumer("ledger").await.unwrap();
    append(&ours, names("a", 1..=3)).await;
    assert_eq!(read(consumer.as_mut(), 3).await, names("a", 1..=3));
    // Another process (a second handle on the file) appends, then we do:
    // its records come first, from the file, then ours.
    append(&theirs, names("b", 1..=4)).await;
    append(&ours, names("a", 4..=5)).await;
    let mut expected = names("b", 1..=4);
    expected.extend(names("a", 4..=5));
    assert_eq!(read(consumer.as_mut(), 6).await, expected);
    // And a consumer opened behind the tail reads the file up to it.
    let mut late = ours.consumer("exporter").await.unwrap();
    let all = read(late.as_mut(), 9).await;
    assert_eq!(all[..3], names("a", 1..=3)[..]);
    assert_eq!(all[3..], expected[..]);
    common::assert_drained(late.as_mut(), Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_reach_every_consumer_once_and_in_order() {
    let dir = temp_dir();
    let log = Arc::new(SqliteLog::open(&dir.0.join("events.db")).await.unwrap());
    let mut consumers = Vec::new();
    for name in ["ledger", "exporter", "control-plane"] {
        consumers.push(log.consumer(name).await.unwrap());
    }
    let writers: Vec<_> = (0..6u32)
        .map(|w| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for batch in 0..40u32 {
                    let size = 1 + (w * 7 + batch * 3) % 9;
                    append(&log, (0..size).map(|i| format!("w{w}-{batch}-{i}"))).await;
                }
            })
        })
        .collect();
    let total: usize = (0..6u32)
        .flat_map(|w| (0..40u32).map(move |b| (1 + (w * 7 + b * 3) % 9) as usize))
        .sum();
    let readers: Vec<_> = consumers
        .into_iter()
        .map(|mut consumer| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                let mut ids = Vec::new();
                while seqs.len() < total {
                    let d = consumer.next(WAIT).await.unwrap().expect("every record");
                    seqs.push(d.record.seq);
                    ids.push(String::from_utf8(d.record.payload.to_vec()).unwrap());
                    d.ack().await.unwrap();
                }
                common::assert_drained(consumer.as_mut(), Duration::from_millis(50)).await;
                (seqs, ids)
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut first_ids = None;
    for reader in readers {
        let (seqs, ids) = reader.await.unwrap();
        let expected: Vec<u64> = (1..=total as u64).collect();
        assert_eq!(seqs, expected, "every position once, in order");
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), total, "no record twice");
        match &first_ids {
            None => first_ids = Some(ids),
            Some(first) => assert_eq!(&ids, first, "every consumer sees the same order"),
        }
    }
    // What each batch appended is contiguous in the log.
    let ids = first_ids.unwrap();
    for (n, id) in ids.iter().enumerate() {
        let i: u32 = id.rsplit('-').next().unwrap().parse().unwrap();
        if i > 0 {
            let before = &ids[n - 1];
            assert_eq!(
                before.rsplit_once('-').unwrap().0,
                id.rsplit_once('-').unwrap().0
            );
        }
    }
}

#[tokio::test]
async fn acks_are_kept_across_a_reopen_of_the_consumer_and_of_the_file() {
    let dir = temp_dir();
    let path = dir.0.join("events.db");
    let log = SqliteLog::open(&path).await.unwrap();
    append(&log, names("r", 1..=10)).await;
    let mut consumer = log.consumer("ledger").await.unwrap();
    assert_eq!(read(consumer.as_mut(), 4).await, names("r", 1..=4));
    drop(consumer);
    // At once, on the same handle: past the acks (not yet on disk).
    let mut again = log.consumer("ledger").await.unwrap();
    assert_eq!(read(again.as_mut(), 2).await, names("r", 5..=6));
    drop(again);
    // Another process reading where the consumer is (an audit) sees the
    // acks written so far, never more than were made.
    let watcher = SqliteLog::open(&path).await.unwrap();
    assert!(watcher.acked("ledger").await.unwrap() <= 6);
    assert_eq!(
        log.acked("ledger").await.unwrap(),
        6,
        "its own, not yet written"
    );
    // Another handle on the file (a restarted process) after a clean stop.
    log.close().await.unwrap();
    assert_eq!(
        watcher.acked("ledger").await.unwrap(),
        6,
        "written at close"
    );
    let restarted = SqliteLog::open(&path).await.unwrap();
    let mut resumed = restarted.consumer("ledger").await.unwrap();
    assert_eq!(read(resumed.as_mut(), 4).await, names("r", 7..=10));
    // Without a clean stop, the acks are on disk within a flush.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let crashed_after = SqliteLog::open(&path).await.unwrap();
    let mut last = crashed_after.consumer("ledger").await.unwrap();
    assert!(
        last.next(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none(),
        "the acks of a running process reach the file by themselves"
    );
}
