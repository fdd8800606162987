//! The event log: an append-only, totally ordered record of events with
//! durable consumers, and key-value buckets whose changes can be watched.
//!
//! Services see only the traits here. Two implementations:
//! - [`nats::NatsLog`]: NATS JetStream. One stream (file storage) holds every
//!   subject under the deployment's prefix; appends carry `Nats-Msg-Id`, so
//!   the server drops a repeat within its duplicate window; consumers are
//!   durable pull consumers with explicit acks; buckets are JetStream KV.
//! - [`sqlite::SqliteLog`]: one SQLite file, for `modelrouter up`. The same
//!   guarantees within one process: a unique message id, a stored cursor per
//!   consumer, buckets with revisions and in-process watches.
//!
//! Delivery is at least once: a record not acked before a consumer stops is
//! delivered again to the next consumer of that name. Consumers must make
//! applying a record twice harmless (the ledger does, by event id).

pub mod nats;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

/// Why an event-log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log could not be reached or refused the operation.
    #[error("event log unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value is not what this build expects.
    #[error("event log data: {0}")]
    Data(String),
    /// A record over [`EventLog::max_record_bytes`]: refused before sending.
    #[error("a record of {bytes} bytes is over the event log's limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
}

impl From<sqlx::Error> for LogError {
    fn from(e: sqlx::Error) -> Self {
        LogError::Unavailable(Box::new(e))
    }
}

/// Results of the event log.
pub type Result<T> = std::result::Result<T, LogError>;

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position: 1, 2, 3… in append order.
    pub seq: u64,
    /// The subject it was appended under (without the deployment prefix).
    pub subject: String,
    /// The bytes appended.
    pub payload: Bytes,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's position.
    pub seq: u64,
    /// An earlier append had the same id: nothing was added.
    pub duplicate: bool,
}

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub subject: &'a str,
    /// The event's id (the dedupe key).
    pub id: &'a str,
    pub payload: &'a [u8],
}

/// The log.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends `payload` under `subject`. `id` identifies the event: a
    /// repeated append with the same id adds nothing (NATS: within its
    /// duplicate window; consumers dedupe beyond it).
    async fn append(&self, subject: &str, id: &str, payload: &[u8]) -> Result<Appended>;

    /// Appends several records, in order, sharing the round trips where the
    /// implementation can (NATS pipelines the acks, SQLite uses one
    /// transaction); an error means some may have been appended, which a
    /// retry with the same ids makes harmless.
    async fn append_batch(&self, items: &[Outgoing<'_>]) -> Result<Vec<Appended>> {
        let mut appended = Vec::with_capacity(items.len());
        for item in items {
            appended.push(self.append(item.subject, item.id, item.payload).await?);
        }
        Ok(appended)
    }

    /// The durable consumer `name`: every record after the last one it acked.
    async fn consumer(&self, name: &str) -> Result<Box<dyn Consumer>>;

    /// Up to `limit` records from position `from` on, for replays.
    async fn read(&self, from: u64, limit: usize) -> Result<Vec<Record>>;

    /// The position of the last record (0 when empty).
    async fn last_seq(&self) -> Result<u64>;

    /// The position through which the durable consumer `name` has acked
    /// every record, as the log has taken it (0 for a consumer never
    /// opened). It may trail the consumer's latest acks (the embedded log
    /// writes them every 200 ms), never lead them: an audit of a live
    /// reader's work reads it to know what that work must already hold.
    async fn acked(&self, name: &str) -> Result<u64>;

    /// The key-value bucket `name`, created when missing.
    async fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>>;

    /// The largest payload one record may carry (NATS: the server's
    /// advertised `max_payload` less room for headers). Publishers size their
    /// batches by it: a record over it is refused, and on NATS the server
    /// drops the connection too.
    fn max_record_bytes(&self) -> usize;

    /// Writes what the log holds in memory only (the embedded log's recent
    /// acks); a process calls it last, after its consumers' final acks, so
    /// the next start does not read their records again.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// A durable consumer.
#[async_trait]
pub trait Consumer: Send {
    /// The next record, waiting up to `wait`; `None` when none came.
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>>;
}

/// A delivered record; [`Delivery::ack`] it once its effect is durable.
pub struct Delivery {
    /// The record.
    pub record: Record,
    /// The log held more records for this consumer when it delivered this
    /// one: a reader gathering a batch can wait for them without guessing
    /// how long the next fetch takes. `false` when the log cannot tell.
    pub more_ready: bool,
    acker: Box<dyn Ack>,
}

impl Delivery {
    /// A delivery acked through `acker`.
    pub fn new(record: Record, acker: Box<dyn Ack>) -> Delivery {
        Delivery {
            record,
            more_ready: false,
            acker,
        }
    }

    /// The same delivery, saying whether more records were ready behind it.
    pub fn with_more_ready(self, more_ready: bool) -> Delivery {
        Delivery { more_ready, ..self }
    }

    /// Marks the record done for this consumer.
    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }

    /// Marks a batch done: `deliveries` from one consumer, in the order it
    /// delivered them. Only the last ack waits for the log to confirm it;
    /// the ones before it are sent without waiting (or, where acks are
    /// cumulative, left to the last), so a batch costs one round trip.
    /// If it fails, some of the batch may come again, never none of a
    /// record that was not acked.
    pub async fn ack_all(deliveries: Vec<Delivery>) -> Result<()> {
        let mut deliveries = deliveries.into_iter();
        let last = deliveries.next_back();
        for delivery in deliveries {
            delivery.acker.ack_before_last().await?;
        }
        match last {
            Some(last) => last.ack().await,
            None => Ok(()),
        }
    }
}

/// How one implementation acks one delivery.
#[async_trait]
pub trait Ack: Send + Sync {
    /// Acks, and returns once the log has taken it: consumers opened
    /// afterwards start past it (the embedded log writes it to disk within
    /// 200 ms; a crash before that delivers the records again).
    async fn ack(self: Box<Self>) -> Result<()>;

    /// Acks a delivery that a later one of the same batch will follow with
    /// [`Ack::ack`] (see [`Delivery::ack_all`]); by default, the same.
    async fn ack_before_last(self: Box<Self>) -> Result<()> {
        self.ack().await
    }
}

/// A value in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Bytes,
    /// Increases with every put to the bucket.
    pub revision: u64,
}

/// A key-value bucket.
#[async_trait]
pub trait Bucket: Send + Sync {
    /// Stores `value` under `key`; returns its revision.
    async fn put(&self, key: &str, value: &[u8]) -> Result<u64>;
    /// Stores every (key, value), keys distinct, in as few round trips or
    /// transactions as the bucket can; by default one put each.
    async fn put_all(&self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        for (key, value) in entries {
            self.put(key, value).await?;
        }
        Ok(())
    }
    /// The current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<Entry>>;
    /// Every key's current value, now: for a follower that must start
    /// complete (a gateway must not refuse a valid key while it catches up).
    async fn snapshot(&self) -> Result<Vec<Entry>>;
    /// Every key's current value, then every change as it happens.
    async fn watch(&self) -> Result<BoxStream<'static, Result<Entry>>>;
}
