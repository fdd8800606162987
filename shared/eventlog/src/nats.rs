//! The event log on NATS JetStream.
//!
//! A deployment has a prefix (`mr` by default; tests use a unique one each):
//! subjects are `{prefix}.{subject}`, the stream `{PREFIX}_EVENTS` (file
//! storage, a 2-minute duplicate window) and buckets `{prefix}_{name}` (file
//! storage, one revision kept per key).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use crate::{
    Ack, Appended, Bucket, Consumer, Delivery, Entry, EventLog, LogError, Outgoing, Record, Result,
};

/// How long the server remembers message ids to drop repeated appends.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a delivered, unacked record waits before it is delivered again
/// (also how long a restarted consumer may wait for what its predecessor
/// had fetched but not acked).
const ACK_WAIT: Duration = Duration::from_secs(5);
/// Records a consumer fetches ahead of its acks: a ledger batch's worth
/// (1,024), so a consumer that fell behind folds full batches …
const PREFETCH: usize = 1024;
/// … and their bytes at most: a ledger batch's bytes, since what waits in
/// the buffer longer than [`ACK_WAIT`] is sent again (and dropped here as
/// a repeat), and bytes, not records, are what a consumer takes time over.
/// At least twice the server's `max_payload`, though: a record larger than
/// a fetch's byte bound would never come.
const PREFETCH_BYTES: usize = 16 * 1024 * 1024;
/// Records delivered and not yet acked, at most, per consumer: a batch
/// being published, the next one folding, one gathered ahead of it (the
/// ledger's batches hold up to 2,048 records on PostgreSQL) and a fetch
/// ahead of them all. The
/// server's default (1,000) stopped delivery while one full batch waited
/// for its ack, so no batch could fold while another was published.
const MAX_ACK_PENDING: i64 = 8 * PREFETCH as i64;
/// How long one JetStream request (an append's ack, a lookup) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Room left in the server's `max_payload` for a record's headers
/// (`Nats-Msg-Id` and the protocol line).
const HEADER_ROOM: usize = 4 * 1024;
/// The payload limit assumed before the server has told its own: the
/// smallest `max_payload` a NATS server is commonly run with.
const UNKNOWN_MAX_PAYLOAD: usize = 64 * 1024;

/// The servers of `url`: one `nats://host:port`, or several separated by
/// commas (a cluster's nodes; the client also learns the others from the
/// first it reaches).
fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse().map_err(|e| {
                LogError::Unavailable(format!("NATS server address `{u}`: {e}").into())
            })
        })
        .collect()
}

fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LogError {
    LogError::Unavailable(e.into())
}

/// The log on a NATS server.
pub struct NatsLog {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Created (or found) on first use, so a log can be opened while the
    /// server is down.
    stream: OnceCell<stream::Stream>,
    prefix: String,
    /// Copies the cluster keeps of the stream and the buckets it creates
    /// (1 on a single server; 3 on a three-node cluster survives a node).
    replicas: usize,
}

impl NatsLog {
    /// Connects to `url` and creates the stream for `prefix` if missing;
    /// fails when the server cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsLog> {
        NatsLog::connect_replicated(url, prefix, 1).await
    }

    /// [`NatsLog::connect`], creating the stream and buckets with `replicas` copies.
    pub async fn connect_replicated(url: &str, prefix: &str, replicas: usize) -> Result<NatsLog> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(REQUEST_TIMEOUT)
            .connect(servers(url)?)
            .await
            .map_err(unavailable)?;
        let log = NatsLog::on(client, prefix, replicas);
        log.stream().await?;
        Ok(log)
    }

    /// A log on `url` that connects in the background and keeps
    /// reconnecting: every operation fails while the server is unreachable
    /// and works once it is back. A gateway opens its log this way, so it
    /// starts and serves (spooling usage) during an outage.
    pub async fn lazy(url: &str, prefix: &str) -> Result<NatsLog> {
        NatsLog::lazy_replicated(url, prefix, 1).await
    }

    /// [`NatsLog::lazy`], creating the stream and buckets with `replicas` copies.
    pub async fn lazy_replicated(url: &str, prefix: &str, replicas: usize) -> Result<NatsLog> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(REQUEST_TIMEOUT)
            .retry_on_initial_connect()
            .connect(servers(url)?)
            .await
            .map_err(unavailable)?;
        Ok(NatsLog::on(client, prefix, replicas))
    }

    fn on(client: async_nats::Client, prefix: &str, replicas: usize) -> NatsLog {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        NatsLog {
            client,
            js,
            stream: OnceCell::new(),
            prefix: prefix.to_owned(),
            replicas: replicas.max(1),
        }
    }

    /// The deployment's stream, created when missing.
    async fn stream(&self) -> Result<&stream::Stream> {
        self.stream
            .get_or_try_init(|| async {
                self.js
                    .get_or_create_stream(stream::Config {
                        name: stream_name(&self.prefix),
                        subjects: vec![format!("{}.>", self.prefix)],
                        storage: stream::StorageType::File,
                        duplicate_window: DUPLICATE_WINDOW,
                        num_replicas: self.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    /// Refuses a payload the server would refuse (and drop the connection for).
    fn check_size(&self, payload: &[u8]) -> Result<()> {
        let limit = self.max_record_bytes();
        if payload.len() > limit {
            return Err(LogError::TooLarge {
                bytes: payload.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Deletes everything this prefix made on the server: its event stream
    /// and every bucket named `{prefix}_…` (so also those of a prefix that
    /// begins `{prefix}_`), whoever created them. Tests and benches clean up
    /// with it: a bucket a test forgot to name would stay on the shared server.
    pub async fn destroy(&self) -> Result<()> {
        let buckets = format!("KV_{}", self.bucket_name(""));
        let names: Vec<String> = self
            .js
            .stream_names()
            .try_collect()
            .await
            .map_err(unavailable)?;
        for name in names {
            if name.starts_with(&buckets) || name == stream_name(&self.prefix) {
                self.js.delete_stream(&name).await.map_err(unavailable)?;
            }
        }
        Ok(())
    }

    fn bucket_name(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    fn record(&self, subject: &str, seq: u64, payload: Bytes) -> Record {
        let subject = subject
            .strip_prefix(&self.prefix)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(subject);
        Record {
            seq,
            subject: subject.to_owned(),
            payload,
        }
    }
}

fn stream_name(prefix: &str) -> String {
    format!("{}_EVENTS", prefix.to_uppercase())
}

#[async_trait]
impl EventLog for NatsLog {
    async fn append(&self, subject: &str, id: &str, payload: &[u8]) -> Result<Appended> {
        self.check_size(payload)?;
        self.stream().await?;
        let publish = jetstream::context::Publish::build()
            .payload(Bytes::copy_from_slice(payload))
            .message_id(id);
        let ack = self
            .js
            .send_publish(format!("{}.{subject}", self.prefix), publish)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(Appended {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn append_batch(&self, items: &[Outgoing<'_>]) -> Result<Vec<Appended>> {
        for item in items {
            self.check_size(item.payload)?;
        }
        self.stream().await?;
        let mut pending = Vec::with_capacity(items.len());
        for item in items {
            let publish = jetstream::context::Publish::build()
                .payload(Bytes::copy_from_slice(item.payload))
                .message_id(item.id);
            let ack = self
                .js
                .send_publish(format!("{}.{}", self.prefix, item.subject), publish)
                .await
                .map_err(unavailable)?;
            pending.push(ack);
        }
        let mut appended = Vec::with_capacity(pending.len());
        for ack in pending {
            let ack = ack.await.map_err(unavailable)?;
            appended.push(Appended {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            });
        }
        Ok(appended)
    }

    /// The durable consumer `name`, delivering in log order from its first
    /// unacked record. JetStream alone would not: records a crashed reader
    /// was sent but never acked come back only after the ack wait, behind
    /// newer ones, and readers whose decisions depend on order (the
    /// ledger's auto-recharge, the control plane's projection) would then
    /// see another history than the log's. So each opening starts the
    /// consumer afresh at its ack floor.
    async fn consumer(&self, name: &str) -> Result<Box<dyn Consumer>> {
        let stream = self.stream().await?;
        let floor = match stream.consumer_info(name).await {
            Ok(info) => Some(info.ack_floor.stream_sequence),
            Err(_) => None,
        };
        if floor.is_some() {
            stream.delete_consumer(name).await.map_err(unavailable)?;
        }
        let deliver_policy = match floor {
            Some(acked) if acked > 0 => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: acked + 1,
            },
            _ => consumer::DeliverPolicy::All,
        };
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(PREFETCH)
            .max_bytes_per_batch(PREFETCH_BYTES.max(2 * self.client.server_info().max_payload))
            .messages()
            .await
            .map_err(unavailable)?;
        Ok(Box::new(NatsConsumer {
            messages,
            prefix: self.prefix.clone(),
            next_seq: 0,
        }))
    }

    /// The consumer's ack floor, JetStream's own "everything through here
    /// is acked"; but a consumer [`NatsLog::consumer`] has just created
    /// reports 0 until its first ack, though it starts past the floor of
    /// the one it replaced, so the start counts too. Only a consumer the
    /// server does not know is at 0: any other failure is an error, not a
    /// position (an audit trusting 0 would check less than it says).
    async fn acked(&self, name: &str) -> Result<u64> {
        let stream = self.stream().await?;
        let info = match stream.consumer_info(name).await {
            Ok(info) => info,
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
                return Ok(0)
            }
            Err(e) => return Err(unavailable(e)),
        };
        let started_after = match info.config.deliver_policy {
            consumer::DeliverPolicy::ByStartSequence { start_sequence } => {
                start_sequence.saturating_sub(1)
            }
            _ => 0,
        };
        Ok(info.ack_floor.stream_sequence.max(started_after))
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<Record>> {
        let last = self.last_seq().await?;
        let stream = self.stream().await?;
        let mut records = Vec::new();
        let mut seq = from.max(1);
        while seq <= last && records.len() < limit {
            let message = stream.get_raw_message(seq).await.map_err(unavailable)?;
            records.push(self.record(message.subject.as_str(), seq, message.payload));
            seq += 1;
        }
        Ok(records)
    }

    async fn last_seq(&self) -> Result<u64> {
        let mut stream = self
            .js
            .get_stream(stream_name(&self.prefix))
            .await
            .map_err(unavailable)?;
        let info = stream.info().await.map_err(unavailable)?;
        Ok(info.state.last_sequence)
    }

    async fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>> {
        let bucket = self.bucket_name(name);
        // The bucket's stream, created as the KV layer would. `create_key_value`
        // itself sends fields NATS 2.9 (Debian's) refuses, so the stream is made
        // here and opened as a bucket.
        self.js
            .get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let store = self.js.get_key_value(&bucket).await.map_err(unavailable)?;
        Ok(Arc::new(NatsBucket { store }))
    }

    fn max_record_bytes(&self) -> usize {
        let advertised = self.client.server_info().max_payload;
        let max_payload = if advertised == 0 {
            UNKNOWN_MAX_PAYLOAD
        } else {
            advertised
        };
        max_payload - HEADER_ROOM.min(max_payload / 4)
    }
}

struct NatsConsumer {
    messages: consumer::pull::Stream,
    prefix: String,
    /// The lowest position not yet delivered by this opening: anything
    /// below it is a redelivery of a record this reader already holds
    /// (slow to ack), which it must not see twice or out of order.
    next_seq: u64,
}

struct NatsAck(jetstream::Message);

#[async_trait]
impl Ack for NatsAck {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.0.double_ack().await.map_err(unavailable)
    }

    /// Sent without waiting for the server: it handles one connection's
    /// acks in order, so the last one's confirmation covers this one too.
    async fn ack_before_last(self: Box<Self>) -> Result<()> {
        self.0.ack().await.map_err(unavailable)
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        let (message, seq, pending) = loop {
            let message = match tokio::time::timeout_at(deadline, self.messages.next()).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(unavailable(e)),
                Ok(Some(Ok(message))) => message,
            };
            let info = message.info().map_err(unavailable)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq >= self.next_seq {
                self.next_seq = seq + 1;
                break (message, seq, pending);
            }
        };
        let subject = message.subject.as_str();
        let subject = subject
            .strip_prefix(&self.prefix)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(subject)
            .to_owned();
        let record = Record {
            seq,
            subject,
            payload: message.payload.clone(),
        };
        Ok(Some(
            Delivery::new(record, Box::new(NatsAck(message))).with_more_ready(pending > 0),
        ))
    }
}

struct NatsBucket {
    store: kv::Store,
}

#[async_trait]
impl Bucket for NatsBucket {
    async fn put(&self, key: &str, value: &[u8]) -> Result<u64> {
        self.store
            .put(key, Bytes::copy_from_slice(value))
            .await
            .map_err(unavailable)
    }

    /// All in flight at once, on the one connection: one round trip's wait
    /// instead of one per entry.
    async fn put_all(&self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        futures_util::future::try_join_all(entries.iter().map(|(key, value)| self.put(key, value)))
            .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        let entry = self.store.entry(key).await.map_err(unavailable)?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| Entry {
                key: e.key,
                value: e.value,
                revision: e.revision,
            }))
    }

    async fn snapshot(&self) -> Result<Vec<Entry>> {
        let keys: Vec<String> = match self.store.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(unavailable)?,
            Err(e) => return Err(unavailable(e)),
        };
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(entry) = self.get(&key).await? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<Entry>>> {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(unavailable)?;
        Ok(watch
            .filter_map(|item| async move {
                match item {
                    Ok(e) if e.operation == kv::Operation::Put => Some(Ok(Entry {
                        key: e.key,
                        value: e.value,
                        revision: e.revision,
                    })),
                    Ok(_) => None,
                    Err(e) => Some(Err(unavailable(e))),
                }
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_may_list_a_clusters_nodes() {
        assert_eq!(servers("nats://a:4222").unwrap().len(), 1);
        assert_eq!(
            servers("nats://a:4222, nats://b:4222,nats://c:4222")
                .unwrap()
                .len(),
            3
        );
        assert!(servers("nats://a:4222,http://[bad").is_err());
    }
}
