//! Gathering the log's records into batches, and gathering ahead: while
//! one batch folds, a task of its own pulls and decodes the next, so the
//! store never waits on the log between two batches.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventlog::{Consumer, Delivery};
use events::{AccountId, Envelope};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::service::POLL;
use crate::LedgerError;

/// Records applied per batch at most on SQLite: at a backlog, a batch's
/// fixed costs (the commit's fsync, reading and publishing the touched
/// accounts' states, the ack) spread over this many, and a full batch
/// holds SQLite's one connection for about 100 ms …
pub(crate) const BATCH_ON_SQLITE: usize = 1024;
/// … and on PostgreSQL, where the fold's connections are not the readers'
/// (a pool of eight): the account upserts cost per account touched, not
/// per event, so a batch twice as large pays them once for twice the
/// events (18,500 → 22,000 events/s in the fold bench, 500 accounts).
pub(crate) const BATCH_ON_POSTGRES: usize = 2048;
/// … and their bytes (a record may hold megabytes of a publisher's backlog);
/// the record that crosses it is the batch's last.
const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// … and the bytes past which a batch stops lingering: at a rate that
/// fills a batch this far, waiting longer only adds lag (the batch's fixed
/// costs are spread thin already). In `up`, whose linger is long, this is
/// what keeps the lag at saturation near the publisher's own gathering.
const LINGER_BYTES: usize = 256 * 1024;

/// How long a batch whose linger was cut short waits for each further
/// record when the log has not said one is ready (see [`READY_WAIT`]): a
/// log that cannot tell (the embedded one between its reads ahead) may
/// still have more than it holds in hand.
const CUT_SHORT_GRACE: Duration = Duration::from_millis(10);

/// How long a batch cut short waits for a record the log said was ready
/// (a fetch in flight): long enough for a busy machine, bounded all the same.
const READY_WAIT: Duration = Duration::from_secs(1);

/// A batch of records, decoded.
pub(crate) struct Gathered {
    /// The records, to ack once the batch is folded and published.
    pub batch: Vec<Delivery>,
    /// Their events with the log position of the record that holds each.
    pub events: Vec<(u64, Envelope)>,
    /// The records this build cannot decode, with why.
    pub rejected: Vec<(u64, String)>,
    /// The accounts the events touch.
    pub touched: BTreeSet<AccountId>,
}

/// How often a batch gathered ahead, past its linger, looks whether the
/// fold wants it yet (while it takes the records that come meanwhile).
const TOP_UP: Duration = Duration::from_millis(2);

/// Gathers the records available now and those that come within `linger`
/// after the first (or until they hold [`LINGER_BYTES`] or anything but
/// usage), up to `most` records; `None` after waiting `first` for one.
/// With `wanted`, a batch past its linger keeps taking records until the
/// flag says the fold waits for it (or it is full): a batch gathered ahead
/// holds what came while the one before folded, as one gathered after that
/// fold would, so at saturation batches stay as large (and as few) as
/// without gathering ahead.
pub(crate) async fn gather(
    consumer: &mut dyn Consumer,
    first: Duration,
    linger: Duration,
    most: usize,
    wanted: Option<&AtomicBool>,
) -> Result<Option<Gathered>, LedgerError> {
    let Some(opening) = consumer.next(first).await? else {
        return Ok(None);
    };
    let mut bytes = opening.record.payload.len();
    let mut usage_only = is_usage(&opening);
    let mut more_ready = opening.more_ready;
    let mut batch = vec![opening];
    let until = tokio::time::Instant::now() + linger;
    while batch.len() < most && bytes < BATCH_BYTES {
        let cut_short = bytes >= LINGER_BYTES || !usage_only;
        let lingering = if cut_short {
            Duration::ZERO
        } else {
            until.saturating_duration_since(tokio::time::Instant::now())
        };
        let topping_up = lingering.is_zero() && wanted.is_some_and(|w| !w.load(Ordering::Acquire));
        let wait = match (topping_up, cut_short) {
            (true, _) => TOP_UP,
            (false, true) if more_ready => READY_WAIT,
            (false, true) => CUT_SHORT_GRACE,
            (false, false) => lingering,
        };
        match consumer.next(wait).await? {
            Some(delivery) => {
                bytes += delivery.record.payload.len();
                usage_only &= is_usage(&delivery);
                more_ready = delivery.more_ready;
                batch.push(delivery);
            }
            None if topping_up => {}
            // Past the linger, what has arrived is taken (a wait of zero).
            None if !lingering.is_zero() => {}
            None => break,
        }
    }
    Ok(Some(decode(batch)))
}

/// Whether `delivery` holds usage, the events that come in volume. Anything
/// else (a grant, a deposit, a limit, a member) is rare and somebody waits
/// for it: a batch that holds one goes without lingering.
fn is_usage(delivery: &Delivery) -> bool {
    delivery.record.subject == events::subjects::USAGE
}

fn decode(batch: Vec<Delivery>) -> Gathered {
    let mut gathered = Gathered {
        events: Vec::with_capacity(batch.len()),
        rejected: Vec::new(),
        touched: BTreeSet::new(),
        batch: Vec::new(),
    };
    for delivery in &batch {
        let seq = delivery.record.seq;
        for decoded in Envelope::decode_all(&delivery.record.payload) {
            match decoded {
                Ok(envelope) => {
                    gathered.touched.insert(envelope.event.account());
                    gathered.events.push((seq, envelope));
                }
                Err(e) => gathered.rejected.push((seq, e.to_string())),
            }
        }
    }
    gathered.batch = batch;
    gathered
}

/// Batches gathered one ahead by a task that owns the consumer. At most
/// one batch waits here while another folds and a third publishes: three
/// batches unacked, within the log's limit of unacked records. Dropping it
/// stops the task; the records it held unacked come again, as after a crash.
pub(crate) struct Ahead {
    batches: mpsc::Receiver<Result<Gathered, LedgerError>>,
    /// Set while [`Ahead::next`] waits: the batch being gathered goes now.
    wanted: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Ahead {
    /// Starts gathering from `consumer`, each batch lingering `linger` and
    /// holding `most` records at most.
    pub(crate) fn start(mut consumer: Box<dyn Consumer>, linger: Duration, most: usize) -> Ahead {
        let (sender, batches) = mpsc::channel(1);
        let wanted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&wanted);
        let task = tokio::spawn(async move {
            // A slot first, then the records: none is pulled before the
            // previous batch is taken.
            while let Ok(slot) = sender.reserve().await {
                let gathered = loop {
                    let gathering = gather(consumer.as_mut(), POLL, linger, most, Some(&flag));
                    match gathering.await {
                        Ok(None) => continue,
                        Ok(Some(gathered)) => break Ok(gathered),
                        Err(e) => break Err(e),
                    }
                };
                let failed = gathered.is_err();
                slot.send(gathered);
                if failed {
                    return;
                }
            }
        });
        Ahead {
            batches,
            wanted,
            task,
        }
    }

    /// The next batch, waiting up to `wait`; `None` when none came.
    pub(crate) async fn next(&mut self, wait: Duration) -> Result<Option<Gathered>, LedgerError> {
        self.wanted.store(true, Ordering::Release);
        let received = tokio::time::timeout(wait, self.batches.recv()).await;
        self.wanted.store(false, Ordering::Release);
        match received {
            Err(_elapsed) => Ok(None),
            Ok(Some(gathered)) => gathered.map(Some),
            Ok(None) => Err(LedgerError::Data(
                "the task gathering the ledger's records stopped".into(),
            )),
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use money::Money;
    use test_support::backends::{usage_event, Backends};

    async fn append(backends: &Backends, count: u64) {
        let account = AccountId::new();
        for seq in 1..=count {
            let envelope = usage_event(account, seq, Money::from_nanos(1));
            let id = envelope.id.to_string();
            backends
                .log
                .append(envelope.event.subject(), &id, &envelope.encode())
                .await
                .unwrap();
        }
    }

    /// Gathers with a linger of a minute; fails unless the batch comes
    /// within 30 s, that is without waiting the linger out.
    async fn gather_at_once(consumer: &mut dyn Consumer) -> Gathered {
        let linger = Duration::from_secs(60);
        let gathering = gather(consumer, Duration::from_secs(5), linger, 1 << 20, None);
        tokio::time::timeout(Duration::from_secs(30), gathering)
            .await
            .expect("the batch goes before its linger is out")
            .unwrap()
            .unwrap()
    }

    /// A batch that holds [`LINGER_BYTES`] goes without waiting out the
    /// linger: with a linger of a minute it still comes at once.
    #[tokio::test]
    async fn a_full_enough_batch_stops_lingering() {
        let backends = Backends::embedded().await;
        let mut consumer = backends.log.consumer("gather-test").await.unwrap();
        let account = AccountId::new();
        let (mut bytes, mut seq) = (0, 0);
        while bytes < LINGER_BYTES {
            seq += 1;
            let envelope = usage_event(account, seq, Money::from_nanos(1));
            let payload = envelope.encode();
            bytes += payload.len();
            let id = envelope.id.to_string();
            backends
                .log
                .append(envelope.event.subject(), &id, &payload)
                .await
                .unwrap();
        }
        let gathered = gather_at_once(consumer.as_mut()).await;
        assert_eq!(gathered.events.len() as u64, seq);
        drop(consumer);
        backends.cleanup().await;
    }

    /// A grant (like a deposit, a limit or a new member) is waited for by
    /// somebody: the batch that holds it goes without waiting out the
    /// linger, usage gathered before it included.
    #[tokio::test]
    async fn a_batch_with_anything_but_usage_stops_lingering() {
        let backends = Backends::embedded().await;
        let mut consumer = backends.log.consumer("gather-test").await.unwrap();
        let account = AccountId::new();
        append(&backends, 3).await;
        backends
            .publish(events::Event::CreditsGranted(events::CreditsGranted {
                account,
                amount: Money::from_nanos(5),
                reason: "signup".into(),
            }))
            .await;
        let gathered = gather_at_once(consumer.as_mut()).await;
        assert_eq!(gathered.events.len(), 4);
        drop(consumer);
        backends.cleanup().await;
    }

    /// While the fold is busy (nobody asks for the next batch), the batch
    /// gathered ahead takes every record that comes, past its linger; the
    /// fold then gets them in one batch, not the linger's first few.
    #[tokio::test]
    async fn a_batch_gathered_ahead_takes_what_comes_until_the_fold_asks() {
        let backends = Backends::embedded().await;
        let consumer = backends.log.consumer("gather-test").await.unwrap();
        let mut ahead = Ahead::start(consumer, Duration::from_millis(10), BATCH_ON_SQLITE);
        append(&backends, 5).await;
        let first = ahead.next(Duration::from_secs(10)).await.unwrap().unwrap();
        assert_eq!(first.batch.len(), 5);
        // The fold is busy now: records come in two bursts, each past the
        // linger of the batch being gathered.
        append(&backends, 5).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        append(&backends, 5).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let next = ahead.next(Duration::from_secs(10)).await.unwrap().unwrap();
        assert_eq!(next.batch.len(), 10);
        assert_eq!(next.events.len(), 10);
        drop(ahead);
        backends.cleanup().await;
    }
}
