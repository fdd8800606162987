//! The embedded event log: one SQLite file (WAL, `synchronous = FULL`, so an
//! append that returned survives a crash), for `modelrouter up`.
//!
//! Differences from JetStream, none visible to a correct consumer: message
//! ids are remembered forever (not for a window); a consumer's acks are
//! cumulative (acking record 7 acks everything before it, so consumers ack
//! in order, as the ledger does) and written every 200 ms (see [`acks`]);
//! watches are in-process, which is all a single-process deployment has.
//!
//! Every consumer of `up` reads every record, most of them just after it
//! was appended: those come from the [`tail`] in memory, so an append costs
//! one trip to SQLite's thread, not one per consumer.
//!
//! # What is fsynced when
//!
//! An append commits with `synchronous = FULL`: the WAL is fsynced before
//! the append returns, so a record survives a machine's crash. Bucket
//! values and acks are written on a connection of their own with
//! `synchronous = NORMAL` (no fsync at commit): both are derived from
//! records and written after what they derive from (a consumer puts what a
//! record changed, then acks it), so losing the last of them to a crash
//! only brings those records again, and a repeat puts them again. A crash
//! cannot keep an ack and lose the put before it: all connections append
//! to one WAL, whose frames are checksummed in a chain, so recovery keeps
//! a prefix of them, and every FULL commit fsyncs the frames before it.
//! The ledger's states and the acks were half of `up`'s commits at 200
//! req/s; writing them this way took SQLite's threads from 70–73 to 53–57
//! µs of CPU a request there (docs/PERFORMANCE.md).

mod acks;
mod tail;

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{broadcast, Notify};

use crate::{
    Ack, Appended, Bucket, Consumer, Delivery, Entry, EventLog, LogError, Outgoing, Record, Result,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_records (
    seq INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_consumers (name TEXT PRIMARY KEY, acked INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv_entries (
    bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, revision INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS kv_revisions (bucket TEXT PRIMARY KEY, revision INTEGER NOT NULL);
";

/// Changes a watcher may fall behind by before it must watch again.
const WATCH_BUFFER: usize = 4096;
/// The largest record this log takes: SQLite itself allows far more, but
/// a bound keeps every publisher's batches (and memory) in the same range
/// on both logs.
const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// The log in one SQLite file.
#[derive(Clone)]
pub struct SqliteLog {
    pool: SqlitePool,
    /// One connection with `synchronous = NORMAL`, for bucket values and
    /// acks (see the module's note on what is fsynced).
    derived: SqlitePool,
    appended: Arc<Notify>,
    buckets: Arc<Mutex<HashMap<String, Arc<SqliteBucket>>>>,
    /// Held from an append's transaction until its records are in `tail`,
    /// so the tail takes them in log order.
    appending: Arc<tokio::sync::Mutex<()>>,
    tail: Arc<Mutex<tail::Tail>>,
    acks: Arc<acks::Acks>,
}

impl SqliteLog {
    /// Opens (creating if needed) the log at `path`.
    pub async fn open(path: &Path) -> Result<SqliteLog> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // A new file's pages: 16 KiB, as the store's (see `store`).
            .page_size(16384)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // No ping before each use: the connection is in this process and
        // cannot drop, and a ping is a trip to SQLite's thread like a query.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        let derived = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await?;
        let acks = Arc::new(acks::Acks::default());
        tokio::spawn(acks::keep_flushing(Arc::downgrade(&acks), derived.clone()));
        Ok(SqliteLog {
            pool,
            derived,
            appended: Arc::new(Notify::new()),
            buckets: Arc::default(),
            appending: Arc::default(),
            tail: Arc::default(),
            acks,
        })
    }

    /// Appends `items` in one statement when they fit one (its own
    /// transaction: no trips for BEGIN and COMMIT, each a hop to SQLite's
    /// thread like the statement), else in one transaction.
    async fn append_now(&self, items: &[Outgoing<'_>]) -> Result<Vec<Appended>> {
        if append_chunks(items).nth(1).is_none() {
            let mut conn = self.pool.acquire().await?;
            return append_all(&mut conn, items).await;
        }
        let mut tx = self.pool.begin().await?;
        let appended = append_all(&mut tx, items).await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Where `name` has acked through: its ack not yet written if there is
    /// one (it is the later), else the written one; 0 for a consumer never
    /// opened.
    async fn acked_seq(&self, name: &str) -> Result<i64> {
        let pending = self.acks.pending(name);
        let written: Option<i64> =
            sqlx::query_scalar("SELECT acked FROM log_consumers WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let written = written.unwrap_or(0);
        Ok(pending.map_or(written, |seq| seq.max(written)))
    }

    /// The tail, whatever a panicking holder left (it only ever holds
    /// whole records).
    fn tail(&self) -> std::sync::MutexGuard<'_, tail::Tail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn seq_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<Record> {
    Ok(Record {
        seq: seq_of(row.try_get("seq")?),
        subject: row.try_get("subject")?,
        payload: Bytes::from(row.try_get::<Vec<u8>, _>("payload")?),
    })
}

/// Records one `INSERT` of [`append_all`] writes (3 parameters each, under
/// SQLite's limit of 32,766) …
const APPEND_ROWS: usize = 1_024;
/// … and bytes: the statement copies its payloads, and a publisher's
/// post-outage backlog comes as many records of up to 4 MiB.
const APPEND_BYTES: usize = 8 * 1024 * 1024;

/// `items` cut into runs of at most [`APPEND_ROWS`] records and, past the
/// first record of each, [`APPEND_BYTES`] of payload.
fn append_chunks<'a, 'b>(items: &'a [Outgoing<'b>]) -> impl Iterator<Item = &'a [Outgoing<'b>]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let mut bytes = 0;
        let end = rest
            .iter()
            .take(APPEND_ROWS)
            .position(|item| {
                bytes += item.payload.len();
                bytes > APPEND_BYTES
            })
            .map_or(rest.len().min(APPEND_ROWS), |at| at.max(1));
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// Appends `items` within `conn` in one statement per [`APPEND_ROWS`]; an
/// item whose id is already in the log (or earlier in `items`) is not
/// written again and gets the first one's position.
async fn append_all(
    conn: &mut sqlx::SqliteConnection,
    items: &[Outgoing<'_>],
) -> Result<Vec<Appended>> {
    if let Some(big) = items.iter().find(|i| i.payload.len() > MAX_RECORD_BYTES) {
        return Err(LogError::TooLarge {
            bytes: big.payload.len(),
            limit: MAX_RECORD_BYTES,
        });
    }
    let given: std::collections::HashSet<&str> = items.iter().map(|i| i.id).collect();
    let ours = |id: &str| {
        given.get(id).copied().ok_or_else(|| {
            LogError::Data(format!("an append returned an id it was not given: {id}"))
        })
    };
    // Each id's position, and whether an item of this call wrote it.
    let mut written: HashMap<&str, (i64, bool)> = HashMap::with_capacity(items.len());
    for chunk in append_chunks(items) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO log_records (subject, msg_id, payload) ",
        );
        insert.push_values(chunk, |mut row, item| {
            row.push_bind(item.subject)
                .push_bind(item.id)
                .push_bind(item.payload);
        });
        insert.push(" ON CONFLICT (msg_id) DO NOTHING RETURNING seq, msg_id");
        for row in insert.build().fetch_all(&mut *conn).await? {
            let id: String = row.try_get("msg_id")?;
            written.insert(ours(&id)?, (row.try_get("seq")?, true));
        }
    }
    let earlier: Vec<&str> = items
        .iter()
        .map(|i| i.id)
        .filter(|id| !written.contains_key(id))
        .collect();
    for ids in earlier.chunks(APPEND_ROWS) {
        let mut select = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT seq, msg_id FROM log_records WHERE msg_id IN (",
        );
        let mut list = select.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        select.push(")");
        for row in select.build().fetch_all(&mut *conn).await? {
            let id: String = row.try_get("msg_id")?;
            written.insert(ours(&id)?, (row.try_get("seq")?, false));
        }
    }
    items
        .iter()
        .map(|item| {
            let (seq, fresh) = written
                .get_mut(item.id)
                .ok_or_else(|| LogError::Data(format!("record {} is not in the log", item.id)))?;
            let appended = Appended {
                seq: seq_of(*seq),
                duplicate: !*fresh,
            };
            *fresh = false;
            Ok(appended)
        })
        .collect()
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(&self, subject: &str, id: &str, payload: &[u8]) -> Result<Appended> {
        let item = Outgoing {
            subject,
            id,
            payload,
        };
        self.append_batch(&[item])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| LogError::Data("an append returned nothing".into()))
    }

    async fn append_batch(&self, items: &[Outgoing<'_>]) -> Result<Vec<Appended>> {
        let _appending = self.appending.lock().await;
        let appended = match self.append_now(items).await {
            Ok(appended) => appended,
            Err(e) => {
                // Some of it may have committed: consumers read the file.
                self.tail().clear();
                self.appended.notify_waiters();
                return Err(e);
            }
        };
        let mut fresh: Vec<Record> = items
            .iter()
            .zip(&appended)
            .filter(|(_, a)| !a.duplicate)
            .map(|(item, a)| Record {
                seq: a.seq,
                subject: item.subject.to_owned(),
                payload: Bytes::copy_from_slice(item.payload),
            })
            .collect();
        fresh.sort_unstable_by_key(|r| r.seq);
        self.tail().extend(fresh);
        self.appended.notify_waiters();
        Ok(appended)
    }

    async fn consumer(&self, name: &str) -> Result<Box<dyn Consumer>> {
        sqlx::query(
            "INSERT INTO log_consumers (name, acked) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        let acked = self.acked_seq(name).await?;
        Ok(Box::new(SqliteConsumer {
            log: self.clone(),
            name: name.to_owned(),
            cursor: acked,
            ahead: Default::default(),
            caught_up: None,
        }))
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<Record>> {
        let rows = sqlx::query(
            "SELECT seq, subject, payload FROM log_records WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    async fn last_seq(&self) -> Result<u64> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM log_records")
            .fetch_one(&self.pool)
            .await?;
        Ok(last.map(seq_of).unwrap_or(0))
    }

    async fn acked(&self, name: &str) -> Result<u64> {
        Ok(seq_of(self.acked_seq(name).await?))
    }

    async fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>> {
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| LogError::Data("bucket table lock poisoned".into()))?;
        let bucket = buckets.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(SqliteBucket {
                pool: self.pool.clone(),
                writes: self.derived.clone(),
                name: name.to_owned(),
                changes: broadcast::channel(WATCH_BUFFER).0,
                ordered: tokio::sync::Mutex::new(()),
            })
        });
        Ok(Arc::clone(bucket) as Arc<dyn Bucket>)
    }

    fn max_record_bytes(&self) -> usize {
        MAX_RECORD_BYTES
    }

    async fn close(&self) -> Result<()> {
        Ok(self.acks.flush(&self.derived).await?)
    }
}

struct SqliteConsumer {
    log: SqliteLog,
    name: String,
    /// The last record handed out (or read ahead).
    cursor: i64,
    /// Records read ahead of `next`, in order.
    ahead: std::collections::VecDeque<Record>,
    /// Armed before the last read that reached the end of the log, so any
    /// append since completes it. While it is pending there is nothing past
    /// `cursor`, and `next` waits on it rather than asking the log again (a
    /// query per wake per consumer is a round trip to SQLite's thread).
    caught_up: Option<Pin<Box<OwnedNotified>>>,
}

/// Entries one statement of a bucket's `put_all` writes (4 parameters each,
/// under SQLite's limit of 32,766).
const PUT_ROWS: usize = 4_096;

/// Records a consumer reads per query …
const READ_AHEAD: i64 = 256;
/// … and bytes (a record may hold 4 MiB of a publisher's backlog).
const READ_AHEAD_BYTES: i64 = 8 * 1024 * 1024;

#[async_trait]
impl Consumer for SqliteConsumer {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(record) = self.ahead.pop_front() {
                let ack = SqliteAck {
                    acks: Arc::clone(&self.log.acks),
                    name: self.name.clone(),
                    seq: i64::try_from(record.seq).unwrap_or(i64::MAX),
                };
                let more_ready = !self.ahead.is_empty();
                return Ok(Some(
                    Delivery::new(record, Box::new(ack)).with_more_ready(more_ready),
                ));
            }
            if let Some(mut waiting) = self.caught_up.take() {
                if tokio::time::timeout_at(deadline, waiting.as_mut())
                    .await
                    .is_err()
                {
                    self.caught_up = Some(waiting);
                    return Ok(None);
                }
            }
            // Registered before the read, so an append in between still wakes us.
            let mut appended = Box::pin(Arc::clone(&self.log.appended).notified_owned());
            appended.as_mut().enable();
            let cursor = seq_of(self.cursor);
            let recent =
                self.log
                    .tail()
                    .after(cursor, READ_AHEAD as usize, READ_AHEAD_BYTES as usize);
            if let Some(records) = recent {
                if records.is_empty() {
                    self.caught_up = Some(appended);
                }
                for record in records {
                    self.cursor = i64::try_from(record.seq).unwrap_or(i64::MAX);
                    self.ahead.push_back(record);
                }
                continue;
            }
            // Up to READ_AHEAD records, and past READ_AHEAD_BYTES only the first.
            let rows = sqlx::query(
                "SELECT seq, subject, payload FROM (
                     SELECT seq, subject, payload,
                            SUM(LENGTH(payload)) OVER (ORDER BY seq) - LENGTH(payload) AS before
                     FROM (SELECT seq, subject, payload FROM log_records WHERE seq > $1 ORDER BY seq LIMIT $2)
                 ) WHERE before < $3 ORDER BY seq",
            )
            .bind(self.cursor)
            .bind(READ_AHEAD)
            .bind(READ_AHEAD_BYTES)
            .fetch_all(&self.log.pool)
            .await?;
            let mut bytes = 0;
            for row in &rows {
                let record = record(row)?;
                bytes += record.payload.len();
                self.cursor = i64::try_from(record.seq).unwrap_or(i64::MAX);
                self.ahead.push_back(record);
            }
            // Neither limit cut the read: it saw the end of the log.
            if (rows.len() as i64) < READ_AHEAD && (bytes as i64) < READ_AHEAD_BYTES {
                self.caught_up = Some(appended);
            }
        }
    }
}

struct SqliteAck {
    acks: Arc<acks::Acks>,
    name: String,
    seq: i64,
}

#[async_trait]
impl Ack for SqliteAck {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.acks.ack(&self.name, self.seq);
        Ok(())
    }

    /// Nothing to do: acks are cumulative, so the batch's last ack covers it.
    async fn ack_before_last(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

struct SqliteBucket {
    pool: SqlitePool,
    /// Where values are written: [`SqliteLog::derived`].
    writes: SqlitePool,
    name: String,
    changes: broadcast::Sender<Entry>,
    /// Held from a put's transaction to its announcement, so watchers hear
    /// values in revision order: two puts racing between commit and
    /// announce would otherwise leave a watcher with the older value.
    ordered: tokio::sync::Mutex<()>,
}

impl SqliteBucket {
    /// Stores `value` under `key` within `conn`; returns its revision.
    async fn put_on(
        &self,
        conn: &mut sqlx::SqliteConnection,
        key: &str,
        value: &[u8],
    ) -> Result<u64> {
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO kv_revisions (bucket, revision) VALUES ($1, 1)
             ON CONFLICT (bucket) DO UPDATE SET revision = revision + 1 RETURNING revision",
        )
        .bind(&self.name)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO kv_entries (bucket, key, value, revision) VALUES ($1, $2, $3, $4)
             ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
        )
        .bind(&self.name)
        .bind(key)
        .bind(value)
        .bind(revision)
        .execute(&mut *conn)
        .await?;
        Ok(seq_of(revision))
    }

    /// Tells the watchers of a stored value (none watching is fine).
    fn announce(&self, key: &str, value: &[u8], revision: u64) {
        let _ = self.changes.send(Entry {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            revision,
        });
    }
}

#[async_trait]
impl Bucket for SqliteBucket {
    async fn put(&self, key: &str, value: &[u8]) -> Result<u64> {
        let _ordered = self.ordered.lock().await;
        let mut tx = self.writes.begin().await?;
        let revision = self.put_on(&mut tx, key, value).await?;
        tx.commit().await?;
        self.announce(key, value, revision);
        Ok(revision)
    }

    /// One transaction for them all (one fsync): the bucket's revision
    /// moves by their number at once and the entries are written by
    /// multi-row statements, each taking the next revision in order.
    async fn put_all(&self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        let Ok(count) = i64::try_from(entries.len()) else {
            return Err(LogError::Data("too many entries for one put".into()));
        };
        if count == 0 {
            return Ok(());
        }
        let _ordered = self.ordered.lock().await;
        let mut tx = self.writes.begin().await?;
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO kv_revisions (bucket, revision) VALUES ($1, $2)
             ON CONFLICT (bucket) DO UPDATE SET revision = revision + $2 RETURNING revision",
        )
        .bind(&self.name)
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        let mut revision = last - count;
        for chunk in entries.chunks(PUT_ROWS) {
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO kv_entries (bucket, key, value, revision) ");
            insert.push_values(chunk, |mut row, (key, value)| {
                revision += 1;
                row.push_bind(&self.name)
                    .push_bind(key)
                    .push_bind(value)
                    .push_bind(revision);
            });
            insert.push(
                " ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
            );
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        for (n, (key, value)) in entries.iter().enumerate() {
            self.announce(key, value, seq_of(last - count + 1 + n as i64));
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        let row =
            sqlx::query("SELECT value, revision FROM kv_entries WHERE bucket = $1 AND key = $2")
                .bind(&self.name)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(Entry {
                key: key.to_owned(),
                value: Bytes::from(row.try_get::<Vec<u8>, _>("value")?),
                revision: seq_of(row.try_get("revision")?),
            })
        })
        .transpose()
    }

    async fn snapshot(&self) -> Result<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT key, value, revision FROM kv_entries WHERE bucket = $1 ORDER BY revision",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Entry {
                    key: row.try_get("key")?,
                    value: Bytes::from(row.try_get::<Vec<u8>, _>("value")?),
                    revision: seq_of(row.try_get("revision")?),
                })
            })
            .collect()
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<Entry>>> {
        let changes = self.changes.subscribe();
        let rows = sqlx::query(
            "SELECT key, value, revision FROM kv_entries WHERE bucket = $1 ORDER BY revision",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await?;
        let mut current = Vec::with_capacity(rows.len());
        for row in &rows {
            current.push(Ok(Entry {
                key: row.try_get("key")?,
                value: Bytes::from(row.try_get::<Vec<u8>, _>("value")?),
                revision: seq_of(row.try_get("revision")?),
            }));
        }
        let seen = current
            .iter()
            .filter_map(|e| e.as_ref().ok().map(|e| e.revision))
            .max()
            .unwrap_or(0);
        let updates = stream::unfold(changes, |mut changes| async move {
            match changes.recv().await {
                Err(broadcast::error::RecvError::Closed) => None,
                change => Some((change, changes)),
            }
        })
        .filter_map(move |change| async move {
            match change {
                Ok(entry) if entry.revision <= seen => None,
                Ok(entry) => Some(Ok(entry)),
                Err(e) => Some(Err(LogError::Data(format!("watch: {e}; watch again")))),
            }
        });
        Ok(stream::iter(current).chain(updates).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PRAGMA synchronous` and `page_size` on a connection of `pool`.
    async fn settings(pool: &SqlitePool) -> (i64, i64) {
        let mut conn = pool.acquire().await.unwrap();
        let level = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let page = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        // Closed, not returned: the next use opens a new connection.
        conn.close().await.unwrap();
        (level, page)
    }

    /// Appends are fsynced at commit (FULL, 2) on every connection the
    /// pool opens, the first and its replacements; bucket values and acks
    /// are not (NORMAL, 1). A new file has 16 KiB pages.
    #[tokio::test]
    async fn appends_are_fsynced_and_derived_writes_are_not() {
        let dir = std::env::temp_dir().join(format!("log-sync-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = SqliteLog::open(&dir.join("events.db")).await.unwrap();
        for _ in 0..2 {
            assert_eq!(settings(&log.pool).await, (2, 16384), "appends: FULL");
            assert_eq!(settings(&log.derived).await, (1, 16384), "derived: NORMAL");
        }
        let bucket = log.bucket("accounts").await.unwrap();
        bucket.put("a", b"1").await.unwrap();
        let entry = bucket
            .get("a")
            .await
            .unwrap()
            .expect("a put value is read back");
        assert_eq!(&entry.value[..], b"1");
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn appends_are_cut_by_rows_and_by_bytes_and_never_lose_a_record() {
        let big = vec![0u8; 3 * 1024 * 1024];
        let ids: Vec<String> = (0..2_500).map(|i| i.to_string()).collect();
        let item = |i: usize, payload: &'static [u8]| Outgoing {
            subject: "s",
            id: &ids[i],
            payload,
        };
        let small: Vec<Outgoing> = (0..2_500).map(|i| item(i, b"x")).collect();
        let sizes: Vec<usize> = append_chunks(&small).map(<[_]>::len).collect();
        assert_eq!(sizes, [1_024, 1_024, 452]);
        let big: &'static [u8] = Box::leak(big.into_boxed_slice());
        let large: Vec<Outgoing> = (0..7).map(|i| item(i, big)).collect();
        let sizes: Vec<usize> = append_chunks(&large).map(<[_]>::len).collect();
        assert_eq!(
            sizes,
            [2, 2, 2, 1],
            "two 3 MiB records fit in 8 MiB, three do not"
        );
        let huge: &'static [u8] = Box::leak(vec![0u8; 9 * 1024 * 1024].into_boxed_slice());
        let one: Vec<Outgoing> = vec![item(0, huge), item(1, b"x")];
        let sizes: Vec<usize> = append_chunks(&one).map(<[_]>::len).collect();
        assert_eq!(sizes, [1, 1], "a record over the bound goes alone");
        assert_eq!(append_chunks(&[]).count(), 0);
    }
}
