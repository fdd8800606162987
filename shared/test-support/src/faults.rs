//! Event logs that fail on purpose, for tests of what a consumer does when
//! a write it depends on does not happen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use eventlog::{Appended, Bucket, Consumer, Entry, EventLog, LogError, Record, Result};
use futures_util::stream::BoxStream;

/// `inner`, except that its buckets refuse every put while refusing (from
/// the start): a consumer that acks before its views are stored shows.
pub struct RefusingPuts {
    inner: Arc<dyn EventLog>,
    refusing: Arc<AtomicBool>,
}

impl RefusingPuts {
    /// `inner`, refusing puts until [`RefusingPuts::refuse`]`(false)`.
    pub fn new(inner: Arc<dyn EventLog>) -> RefusingPuts {
        RefusingPuts {
            inner,
            refusing: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether puts are refused from now on.
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }
}

struct RefusingBucket {
    inner: Arc<dyn Bucket>,
    refusing: Arc<AtomicBool>,
}

impl RefusingBucket {
    fn check(&self) -> Result<()> {
        if self.refusing.load(Ordering::SeqCst) {
            return Err(LogError::Data("puts refused (test)".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Bucket for RefusingBucket {
    async fn put(&self, key: &str, value: &[u8]) -> Result<u64> {
        self.check()?;
        self.inner.put(key, value).await
    }
    async fn put_all(&self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        self.check()?;
        self.inner.put_all(entries).await
    }
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        self.inner.get(key).await
    }
    async fn snapshot(&self) -> Result<Vec<Entry>> {
        self.inner.snapshot().await
    }
    async fn watch(&self) -> Result<BoxStream<'static, Result<Entry>>> {
        self.inner.watch().await
    }
}

#[async_trait]
impl EventLog for RefusingPuts {
    async fn append(&self, subject: &str, id: &str, payload: &[u8]) -> Result<Appended> {
        self.inner.append(subject, id, payload).await
    }
    async fn consumer(&self, name: &str) -> Result<Box<dyn Consumer>> {
        self.inner.consumer(name).await
    }
    async fn read(&self, from: u64, limit: usize) -> Result<Vec<Record>> {
        self.inner.read(from, limit).await
    }
    async fn last_seq(&self) -> Result<u64> {
        self.inner.last_seq().await
    }
    async fn acked(&self, name: &str) -> Result<u64> {
        self.inner.acked(name).await
    }
    async fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>> {
        Ok(Arc::new(RefusingBucket {
            inner: self.inner.bucket(name).await?,
            refusing: Arc::clone(&self.refusing),
        }))
    }
    fn max_record_bytes(&self) -> usize {
        self.inner.max_record_bytes()
    }
}
