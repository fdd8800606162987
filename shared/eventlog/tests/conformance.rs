//! One suite, run against both implementations: the real NATS server on
//! this machine (a unique prefix per test, deleted afterwards) and a SQLite
//! file in a fresh temporary directory.

mod common;

use std::time::Duration;

use eventlog::nats::NatsLog;
use eventlog::sqlite::SqliteLog;
use eventlog::EventLog;
use futures_util::StreamExt;

const NATS_URL: &str = "nats://127.0.0.1:4222";
const WAIT: Duration = Duration::from_secs(10);

fn prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn nats() -> NatsLog {
    NatsLog::connect(NATS_URL, &prefix())
        .await
        .expect("NATS with JetStream on 127.0.0.1:4222 (see README)")
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn sqlite() -> (SqliteLog, TempDir) {
    let dir = std::env::temp_dir().join(format!("eventlog-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = SqliteLog::open(&dir.join("events.db")).await.unwrap();
    (log, TempDir(dir))
}

async fn appends_are_ordered_and_deduplicated_by_id(log: &dyn EventLog) {
    let a = log.append("events.usage", "id-1", b"one").await.unwrap();
    let again = log.append("events.usage", "id-1", b"one").await.unwrap();
    let b = log.append("events.billing", "id-2", b"two").await.unwrap();
    assert!(!a.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.seq, a.seq);
    assert_eq!(b.seq, a.seq + 1);
    assert_eq!(log.last_seq().await.unwrap(), b.seq);
    let records = log.read(a.seq, 10).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].subject, "events.usage");
    assert_eq!(&records[1].payload[..], b"two");
    assert_eq!(log.read(b.seq, 10).await.unwrap().len(), 1);
    // A batch: in order, repeats (inside it or of earlier appends) add nothing.
    let item = |id: &'static str| eventlog::Outgoing {
        subject: "events.usage",
        id,
        payload: id.as_bytes(),
    };
    let batch = log
        .append_batch(&[item("id-3"), item("id-1"), item("id-4"), item("id-3")])
        .await
        .unwrap();
    let seqs: Vec<(u64, bool)> = batch.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(
        seqs,
        [
            (b.seq + 1, false),
            (a.seq, true),
            (b.seq + 2, false),
            (b.seq + 1, true)
        ]
    );
    assert_eq!(log.last_seq().await.unwrap(), b.seq + 2);
}

async fn consumers_resume_after_their_acks_and_redeliver_the_rest(log: &dyn EventLog) {
    for i in 1..=5 {
        log.append("events.usage", &format!("e{i}"), format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(log.acked("ledger").await.unwrap(), 0, "never opened");
    let mut first = log.consumer("ledger").await.unwrap();
    for expected in ["1", "2", "3"] {
        let d = first.next(WAIT).await.unwrap().expect("a record");
        assert_eq!(&d.record.payload[..], expected.as_bytes());
        d.ack().await.unwrap();
    }
    // Record 4 is delivered but never acked: the consumer "crashes".
    let unacked = first.next(WAIT).await.unwrap().expect("record 4");
    assert_eq!(&unacked.record.payload[..], b"4");
    assert_eq!(
        log.acked("ledger").await.unwrap(),
        3,
        "delivered is not acked"
    );
    drop(unacked);
    drop(first);
    // A record appended meanwhile comes after the unacked ones, as in the log.
    log.append("events.usage", "e6", b"6").await.unwrap();
    let mut second = log.consumer("ledger").await.unwrap();
    assert_eq!(
        log.acked("ledger").await.unwrap(),
        3,
        "reopened, it keeps its acks before acking again"
    );
    let mut seen = Vec::new();
    while let Some(d) = second.next(WAIT).await.unwrap() {
        seen.push(String::from_utf8(d.record.payload.to_vec()).unwrap());
        d.ack().await.unwrap();
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen, ["4", "5", "6"], "in log order");
    common::assert_drained(second.as_mut(), Duration::from_millis(300)).await;
    assert_eq!(log.acked("ledger").await.unwrap(), 6);
    // Another consumer name starts from the beginning.
    let mut other = log.consumer("exporter").await.unwrap();
    let d = other.next(WAIT).await.unwrap().expect("record 1");
    assert_eq!(&d.record.payload[..], b"1");
    assert_eq!(log.acked("exporter").await.unwrap(), 0);
}

/// A consumer that has read everything waits for the next append instead of
/// asking again; no append may slip past that wait: neither one that lands
/// while it waits, nor one after a wait that timed out, nor one between two
/// reads.
async fn a_consumer_at_the_end_sees_every_later_append(log: &dyn EventLog) {
    let mut consumer = log.consumer("ledger").await.unwrap();
    common::assert_drained(consumer.as_mut(), Duration::from_millis(50)).await;
    log.append("events.usage", "late-0", b"0").await.unwrap();
    let d = consumer
        .next(WAIT)
        .await
        .unwrap()
        .expect("after a timed-out wait");
    assert_eq!(&d.record.payload[..], b"0");
    d.ack().await.unwrap();
    for i in 1..=40u32 {
        let id = format!("late-{i}");
        let payload = i.to_string();
        if i % 2 == 0 {
            // Lands while the consumer is already waiting.
            let (appended, delivered) = tokio::join!(
                async {
                    tokio::time::sleep(Duration::from_millis(u64::from(i % 7))).await;
                    log.append("events.usage", &id, payload.as_bytes()).await
                },
                consumer.next(WAIT)
            );
            appended.unwrap();
            let d = delivered.unwrap().expect("an append during the wait");
            assert_eq!(&d.record.payload[..], payload.as_bytes());
            d.ack().await.unwrap();
        } else {
            // Lands between two reads.
            log.append("events.usage", &id, payload.as_bytes())
                .await
                .unwrap();
            let d = consumer
                .next(WAIT)
                .await
                .unwrap()
                .expect("an append between reads");
            assert_eq!(&d.record.payload[..], payload.as_bytes());
            d.ack().await.unwrap();
        }
    }
    // More than one read holds: the end of one read is not the end of the log.
    let ids: Vec<String> = (0..600).map(|i| format!("bulk-{i}")).collect();
    let items: Vec<eventlog::Outgoing> = ids
        .iter()
        .map(|id| eventlog::Outgoing {
            subject: "events.usage",
            id,
            payload: id.as_bytes(),
        })
        .collect();
    log.append_batch(&items).await.unwrap();
    for id in &ids {
        let d = consumer
            .next(Duration::from_secs(2))
            .await
            .unwrap()
            .expect("every record of a long backlog");
        assert_eq!(&d.record.payload[..], id.as_bytes());
        d.ack().await.unwrap();
    }
    common::assert_drained(consumer.as_mut(), Duration::from_millis(50)).await;
}

async fn buckets_keep_the_latest_value_and_watches_see_changes(log: &dyn EventLog) {
    let bucket = log.bucket("accounts").await.unwrap();
    let r1 = bucket.put("acct-a", b"v1").await.unwrap();
    let r2 = bucket.put("acct-b", b"w1").await.unwrap();
    assert!(r2 > r1);
    assert_eq!(
        &bucket.get("acct-a").await.unwrap().unwrap().value[..],
        b"v1"
    );
    assert!(bucket.get("acct-z").await.unwrap().is_none());
    let mut watch = bucket.watch().await.unwrap();
    let mut current = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(WAIT, watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        current.push((e.key, e.value.to_vec()));
    }
    current.sort();
    assert_eq!(
        current,
        [
            ("acct-a".into(), b"v1".to_vec()),
            ("acct-b".into(), b"w1".to_vec())
        ]
    );
    let r3 = bucket.put("acct-a", b"v2").await.unwrap();
    let e = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.key.as_str(), &e.value[..], e.revision),
        ("acct-a", &b"v2"[..], r3)
    );
    assert_eq!(bucket.get("acct-a").await.unwrap().unwrap().revision, r3);
    let mut snapshot: Vec<_> = bucket
        .snapshot()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value.to_vec(), e.revision))
        .collect();
    snapshot.sort();
    assert_eq!(
        snapshot,
        [
            ("acct-a".into(), b"v2".to_vec(), r3),
            ("acct-b".into(), b"w1".to_vec(), r2)
        ]
    );
    let empty = log.bucket("nothing-here").await.unwrap();
    assert!(empty.snapshot().await.unwrap().is_empty());
}

/// Watchers hear a key's values in revision order although puts race: a
/// gateway applies them as they come, so one older value heard last would
/// stay its view (a provider still blocked after the unblock returned).
async fn racing_puts_are_watched_in_revision_order(log: &dyn EventLog) {
    const WRITERS: usize = 16;
    const PUTS: usize = 60;
    let bucket = log.bucket("accounts").await.unwrap();
    let mut watch = bucket.watch().await.unwrap();
    let writers = (0..WRITERS).map(|writer| {
        let bucket = std::sync::Arc::clone(&bucket);
        tokio::spawn(async move {
            for put in 0..PUTS {
                let value = format!("{writer}-{put}");
                bucket.put("acct-a", value.as_bytes()).await.unwrap();
            }
        })
    });
    for writer in futures_util::future::join_all(writers).await {
        writer.unwrap();
    }
    // Every value may not be heard (a watch may skip to a key's latest);
    // the stored one must be, last.
    let stored = bucket.get("acct-a").await.unwrap().unwrap();
    let mut heard = Vec::new();
    while heard
        .last()
        .is_none_or(|e: &eventlog::Entry| e.revision != stored.revision)
    {
        let e = tokio::time::timeout(WAIT, watch.next())
            .await
            .unwrap_or_else(|_| panic!("the stored value is heard ({} heard)", heard.len()))
            .unwrap()
            .unwrap();
        heard.push(e);
    }
    // Nothing older after it (a repeat of it is harmless).
    if let Ok(Some(late)) = tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
        let late = late.unwrap();
        assert_eq!(
            late.revision, stored.revision,
            "heard after the stored value"
        );
    }
    let behind: Vec<u64> = heard
        .windows(2)
        .filter(|pair| pair[1].revision <= pair[0].revision)
        .map(|pair| pair[1].revision)
        .collect();
    assert!(behind.is_empty(), "heard after a newer value: {behind:?}");
    assert_eq!(heard.last().map(|e| &e.value), Some(&stored.value));
}

/// A batch acked with one confirmed ack is done, all of it; one that was
/// not acked comes again whole, in order, after a partial ack.
async fn a_batch_acked_at_once_is_not_delivered_again(log: &dyn EventLog) {
    for i in 1..=300 {
        log.append("events.usage", &format!("b{i}"), format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    let mut consumer = log.consumer("ledger").await.unwrap();
    let mut batch = Vec::new();
    while batch.len() < 200 {
        batch.push(consumer.next(WAIT).await.unwrap().expect("a record"));
    }
    eventlog::Delivery::ack_all(batch).await.unwrap();
    assert_eq!(log.acked("ledger").await.unwrap(), 200, "the whole batch");
    let rest: Vec<_> = {
        let mut rest = Vec::new();
        while rest.len() < 100 {
            rest.push(consumer.next(WAIT).await.unwrap().expect("a record"));
        }
        rest
    };
    eventlog::Delivery::ack_all(rest.into_iter().take(40).collect())
        .await
        .unwrap();
    assert_eq!(log.acked("ledger").await.unwrap(), 240);
    drop(consumer);
    let mut again = log.consumer("ledger").await.unwrap();
    let mut seen = Vec::new();
    while let Some(d) = again.next(WAIT).await.unwrap() {
        seen.push(String::from_utf8(d.record.payload.to_vec()).unwrap());
        d.ack().await.unwrap();
        if seen.len() == 60 {
            break;
        }
    }
    let expected: Vec<String> = (241..=300).map(|i| i.to_string()).collect();
    assert_eq!(
        seen, expected,
        "the 60 never acked, in log order, nothing else"
    );
    common::assert_drained(again.as_mut(), Duration::from_millis(300)).await;
    eventlog::Delivery::ack_all(Vec::new()).await.unwrap();
}

/// Many values stored at once are each stored, and watchers see each.
async fn many_values_put_at_once_are_each_stored_and_seen(log: &dyn EventLog) {
    let bucket = log.bucket("accounts").await.unwrap();
    let before = bucket.put("acct-0", b"old").await.unwrap();
    let mut watch = bucket.watch().await.unwrap();
    let first = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.key, "acct-0");
    let entries: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("acct-{i}"), format!("v{i}").into_bytes()))
        .collect();
    bucket.put_all(&entries).await.unwrap();
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 50 {
        let e = tokio::time::timeout(WAIT, watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.insert(e.key, e.value.to_vec());
    }
    let mut revisions = std::collections::BTreeSet::new();
    for (key, value) in &entries {
        assert_eq!(&seen[key], value);
        let stored = bucket.get(key).await.unwrap().unwrap();
        assert_eq!(&stored.value[..], &value[..]);
        revisions.insert(stored.revision);
    }
    // Each entry took its own revision, all after the put before them and
    // before the put after them.
    let after = bucket.put("acct-after", b"x").await.unwrap();
    assert_eq!(revisions.len(), 50);
    assert_eq!(after, before + 51);
    assert!(revisions.iter().all(|r| (before + 1..after).contains(r)));
}

/// Records as large as the log takes come whole and in order, however many
/// a consumer reads ahead.
async fn the_largest_records_come_whole_and_in_order(log: &dyn EventLog) {
    let size = log.max_record_bytes();
    for i in 0..5u8 {
        log.append("events.usage", &format!("big-{i}"), &vec![b'a' + i; size])
            .await
            .unwrap();
    }
    let mut consumer = log.consumer("ledger").await.unwrap();
    for i in 0..5u8 {
        let d = consumer.next(WAIT).await.unwrap().expect("a record");
        assert_eq!(d.record.payload.len(), size);
        assert!(
            d.record.payload.iter().all(|&b| b == b'a' + i),
            "record {i}"
        );
        d.ack().await.unwrap();
    }
    common::assert_drained(consumer.as_mut(), Duration::from_millis(300)).await;
}

/// A consumer takes a third batch while two full ones (the ledger's one
/// being published and its next one folding) wait for their acks; NATS's
/// default limit of 1,000 unacked records stopped delivery inside the first.
async fn two_unacked_batches_do_not_stop_delivery(log: &dyn EventLog) {
    let records: Vec<(String, Vec<u8>)> = (0..2_100)
        .map(|i| (format!("u{i}"), i.to_string().into_bytes()))
        .collect();
    for chunk in records.chunks(500) {
        let items: Vec<eventlog::Outgoing> = chunk
            .iter()
            .map(|(id, payload)| eventlog::Outgoing {
                subject: "events.usage",
                id,
                payload,
            })
            .collect();
        log.append_batch(&items).await.unwrap();
    }
    let mut consumer = log.consumer("ledger").await.unwrap();
    let mut held = Vec::new();
    while held.len() < records.len() {
        let next = consumer.next(WAIT).await.unwrap();
        let delivery = next.unwrap_or_else(|| panic!("delivery stopped at {} unacked", held.len()));
        assert_eq!(delivery.record.payload, held.len().to_string().into_bytes());
        held.push(delivery);
    }
    eventlog::Delivery::ack_all(held).await.unwrap();
    common::assert_drained(consumer.as_mut(), Duration::from_millis(300)).await;
}

/// A backlog's deliveries say more records are ready behind them, all but
/// the last: the ledger gathers a backlog into full batches on that word,
/// not on a guess of how long the next fetch takes.
async fn a_backlog_says_more_are_ready_until_its_last_record(log: &dyn EventLog) {
    for i in 0..5 {
        log.append("events.usage", &format!("r{i}"), b"{}")
            .await
            .unwrap();
    }
    let mut consumer = log.consumer("ledger").await.unwrap();
    let mut more = Vec::new();
    for _ in 0..5 {
        let delivery = consumer.next(WAIT).await.unwrap().expect("a record");
        more.push(delivery.more_ready);
        delivery.ack().await.unwrap();
    }
    assert_eq!(more, [true, true, true, true, false]);
}

macro_rules! conformance {
    ($name:ident) => {
        conformance!($name, "current_thread");
    };
    ($name:ident, $flavor:literal) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = $flavor)]
            async fn on_nats() {
                let log = nats().await;
                super::$name(&log).await;
                log.destroy().await.unwrap();
            }

            #[tokio::test(flavor = $flavor)]
            async fn on_sqlite() {
                let (log, _dir) = sqlite().await;
                super::$name(&log).await;
            }
        }
    };
}

conformance!(appends_are_ordered_and_deduplicated_by_id);
conformance!(racing_puts_are_watched_in_revision_order, "multi_thread");
conformance!(consumers_resume_after_their_acks_and_redeliver_the_rest);
conformance!(a_consumer_at_the_end_sees_every_later_append);
conformance!(buckets_keep_the_latest_value_and_watches_see_changes);
conformance!(a_batch_acked_at_once_is_not_delivered_again);
conformance!(many_values_put_at_once_are_each_stored_and_seen);
conformance!(the_largest_records_come_whole_and_in_order);
conformance!(two_unacked_batches_do_not_stop_delivery);
conformance!(a_backlog_says_more_are_ready_until_its_last_record);

/// The names of every stream on the machine's NATS server.
async fn stream_names() -> Vec<String> {
    use futures_util::TryStreamExt;
    let client = async_nats::connect(NATS_URL).await.unwrap();
    async_nats::jetstream::new(client)
        .stream_names()
        .try_collect()
        .await
        .unwrap()
}

/// `destroy` removes everything its prefix made (the event stream and every
/// bucket, including ones no caller would think to name) and nothing of any
/// other prefix: tests and benches share this server, and before, each test
/// left the buckets it did not list behind.
#[tokio::test]
async fn destroying_a_nats_log_leaves_nothing_of_its_prefix_and_touches_no_other() {
    let (mine, theirs) = (prefix(), prefix());
    let log = NatsLog::connect(NATS_URL, &mine).await.unwrap();
    let other = NatsLog::connect(NATS_URL, &theirs).await.unwrap();
    log.append("usage", "event-1", b"{}").await.unwrap();
    for bucket in ["accounts", "a-bucket-nobody-lists"] {
        log.bucket(bucket)
            .await
            .unwrap()
            .put("k", b"v")
            .await
            .unwrap();
    }
    other
        .bucket("accounts")
        .await
        .unwrap()
        .put("k", b"v")
        .await
        .unwrap();
    let before = stream_names().await;
    let of = |names: &[String], prefix: &str| {
        names
            .iter()
            .filter(|n| n.to_lowercase().contains(prefix))
            .count()
    };
    assert_eq!(of(&before, &mine), 3, "{before:?}");

    log.destroy().await.unwrap();
    let after = stream_names().await;
    assert_eq!(of(&after, &mine), 0, "{after:?}");
    assert_eq!(of(&after, &theirs), 2, "{after:?}");
    other.destroy().await.unwrap();
    assert_eq!(of(&stream_names().await, &theirs), 0);
}
