//! Following a key-value bucket: the gateway's views (keys, provider
//! blocks, account states) are kept current this way.
//!
//! A view may also be kept on disk (`data_dir/views/<bucket>.json`,
//! rewritten at most once a second while it changes). A gateway that starts
//! while the event log is unreachable begins from that copy instead of
//! refusing to start, serves with it (usage goes to its journal meanwhile),
//! and catches up as soon as the log answers. The copy holds what the
//! buckets hold: key digests (never keys), account ids, blocks, balances.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventlog::{Entry, EventLog, LogError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::probes::Flag;

/// How long a starting gateway waits for the log before it falls back to
/// the copy on disk.
const STARTUP_WAIT: Duration = Duration::from_secs(2);
/// The pause before watching again after the log failed.
const RETRY: Duration = Duration::from_secs(1);
/// The longest one attempt to load or watch the bucket may take: a request
/// lost across a reconnect must not hold the view back for good.
const ATTEMPT: Duration = Duration::from_secs(10);
/// How often a changed view is written to disk.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Where a view comes from.
pub struct Source {
    /// The event log holding the bucket.
    pub log: Arc<dyn EventLog>,
    /// The bucket's name.
    pub bucket: &'static str,
    /// Where the last copy is kept; `None` keeps none (and then a log that
    /// cannot be reached at start is an error).
    pub cache: Option<PathBuf>,
    /// Set once the view holds the bucket's values, from the log or from a
    /// saved copy; until then the service is not ready (`/readyz`).
    pub loaded: Flag,
}

impl Source {
    /// `bucket` on `log`, copied under `data_dir/views/` when a dir is given.
    pub fn new(log: Arc<dyn EventLog>, bucket: &'static str, data_dir: Option<&Path>) -> Source {
        Source {
            log,
            bucket,
            cache: data_dir.map(|dir| dir.join("views").join(format!("{bucket}.json"))),
            loaded: Flag::default(),
        }
    }
}

/// One saved entry (bucket values are JSON written by our own services).
#[derive(Serialize, Deserialize)]
struct Saved {
    key: String,
    revision: u64,
    value: String,
}

/// Applies every current value of the bucket before returning (so the view
/// starts complete, from the log or else from the copy on disk), then every
/// change for as long as the runtime runs, re-watching after errors. Values
/// arrive again after a re-watch; `apply` must take a repeat as a no-op.
pub async fn follow(
    source: Source,
    apply: impl Fn(&Entry) + Send + Sync + 'static,
) -> Result<(), LogError> {
    let mut known = BTreeMap::new();
    match tokio::time::timeout(STARTUP_WAIT, current(&source)).await {
        Ok(Ok(entries)) => {
            for entry in entries {
                apply(&entry);
                known.insert(entry.key.clone(), entry);
            }
            if let Some(path) = &source.cache {
                save(path, &known);
            }
            source.loaded.set();
        }
        failed => {
            let error = match failed {
                Ok(Err(e)) => e,
                _ => LogError::Unavailable(format!("no answer in {STARTUP_WAIT:?}").into()),
            };
            let Some(path) = &source.cache else {
                return Err(error);
            };
            let saved = match load(path) {
                Some(saved) => {
                    source.loaded.set();
                    saved
                }
                None => Vec::new(),
            };
            tracing::warn!(
                bucket = source.bucket,
                %error,
                entries = saved.len(),
                copy = %path.display(),
                "event log unreachable at start: serving with the last saved copy of this view until it answers"
            );
            for entry in saved {
                apply(&entry);
                known.insert(entry.key.clone(), entry);
            }
        }
    }
    tokio::spawn(keep_following(source, known, apply));
    Ok(())
}

async fn current(source: &Source) -> Result<Vec<Entry>, LogError> {
    source.log.bucket(source.bucket).await?.snapshot().await
}

async fn keep_following(
    source: Source,
    mut known: BTreeMap<String, Entry>,
    apply: impl Fn(&Entry) + Send + Sync + 'static,
) {
    let mut save_tick = tokio::time::interval(SAVE_EVERY);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = false;
    loop {
        if !source.loaded.is_set() {
            // Started with nothing to serve from: load the whole bucket
            // before anything is marked ready.
            match bounded(source.bucket, current(&source)).await {
                Ok(entries) => {
                    for entry in entries {
                        apply(&entry);
                        known.insert(entry.key.clone(), entry);
                    }
                    source.loaded.set();
                    dirty = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, bucket = source.bucket, "cannot load; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let watched = bounded(source.bucket, async {
            match source.log.bucket(source.bucket).await {
                Ok(bucket) => bucket.watch().await,
                Err(e) => Err(e),
            }
        })
        .await;
        match watched {
            Ok(mut changes) => loop {
                tokio::select! {
                    change = changes.next() => match change {
                        Some(Ok(entry)) => {
                            apply(&entry);
                            dirty |= known.get(&entry.key).is_none_or(|k| k.revision != entry.revision);
                            known.insert(entry.key.clone(), entry);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, bucket = source.bucket, "watch broke; watching again");
                            break;
                        }
                        None => break,
                    },
                    _ = save_tick.tick(), if dirty && source.cache.is_some() => {
                        if let Some(path) = &source.cache {
                            save(path, &known);
                        }
                        dirty = false;
                    }
                }
            },
            Err(e) => tracing::debug!(error = %e, bucket = source.bucket, "cannot watch; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// `attempt`, or an error when it takes longer than [`ATTEMPT`] (logged:
/// the log answered nothing in that time).
async fn bounded<T>(
    bucket: &str,
    attempt: impl Future<Output = Result<T, LogError>>,
) -> Result<T, LogError> {
    match tokio::time::timeout(ATTEMPT, attempt).await {
        Ok(done) => done,
        Err(_) => {
            tracing::warn!(
                bucket,
                "the event log did not answer within {ATTEMPT:?}; trying again"
            );
            Err(LogError::Unavailable(
                format!("no answer in {ATTEMPT:?}").into(),
            ))
        }
    }
}

/// The saved copy; `None` when there is none or it cannot be read.
fn load(path: &Path) -> Option<Vec<Entry>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(error = %e, copy = %path.display(), "cannot read the saved view");
            return None;
        }
    };
    match serde_json::from_slice::<Vec<Saved>>(&text) {
        Ok(saved) => Some(
            saved
                .into_iter()
                .map(|s| Entry {
                    key: s.key,
                    value: Bytes::from(s.value),
                    revision: s.revision,
                })
                .collect(),
        ),
        Err(e) => {
            tracing::error!(error = %e, copy = %path.display(), "the saved view is unreadable; starting without it");
            None
        }
    }
}

/// Writes the copy whole (a temporary file renamed over it), readable by
/// the owner only.
fn save(path: &Path, known: &BTreeMap<String, Entry>) {
    let saved: Vec<Saved> = known
        .values()
        .filter_map(|e| {
            let value = String::from_utf8(e.value.to_vec()).ok()?;
            Some(Saved {
                key: e.key.clone(),
                revision: e.revision,
                value,
            })
        })
        .collect();
    let written = serde_json::to_vec(&saved)
        .map_err(std::io::Error::other)
        .and_then(|bytes| crate::files::write_private(path, &bytes));
    if let Err(e) = written {
        tracing::warn!(error = %e, copy = %path.display(), "cannot save the view");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use eventlog::sqlite::SqliteLog;
    use eventlog::{Appended, Consumer, Record};

    use super::*;

    /// A real log whose first `stalls` bucket look-ups never answer, as a
    /// request lost across a reconnect would not.
    struct Stalling {
        inner: SqliteLog,
        stalls: AtomicUsize,
    }

    #[async_trait]
    impl EventLog for Stalling {
        async fn append(
            &self,
            subject: &str,
            id: &str,
            payload: &[u8],
        ) -> eventlog::Result<Appended> {
            self.inner.append(subject, id, payload).await
        }
        async fn consumer(&self, name: &str) -> eventlog::Result<Box<dyn Consumer>> {
            self.inner.consumer(name).await
        }
        async fn read(&self, from: u64, limit: usize) -> eventlog::Result<Vec<Record>> {
            self.inner.read(from, limit).await
        }
        async fn last_seq(&self) -> eventlog::Result<u64> {
            self.inner.last_seq().await
        }
        async fn acked(&self, name: &str) -> eventlog::Result<u64> {
            self.inner.acked(name).await
        }
        async fn bucket(&self, name: &str) -> eventlog::Result<Arc<dyn eventlog::Bucket>> {
            let stall = self
                .stalls
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if stall {
                std::future::pending::<()>().await;
            }
            self.inner.bucket(name).await
        }
        fn max_record_bytes(&self) -> usize {
            self.inner.max_record_bytes()
        }
    }

    /// The start-up look-up and the first retry never answer: the view is
    /// still loaded by a later attempt instead of waiting for good.
    #[tokio::test]
    async fn a_look_up_that_never_answers_is_given_up_and_tried_again() {
        let dir = std::env::temp_dir().join(format!("stall-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let inner = SqliteLog::open(&dir.join("events.db")).await.unwrap();
        inner
            .bucket("keys")
            .await
            .unwrap()
            .put("k1", b"{}")
            .await
            .unwrap();
        let log = Arc::new(Stalling {
            inner,
            stalls: AtomicUsize::new(2),
        });
        let source = Source::new(log, "keys", Some(&dir));
        let loaded = source.loaded.clone();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&seen);
        follow(source, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
        assert!(!loaded.is_set(), "nothing answered at start");
        let deadline = tokio::time::Instant::now() + ATTEMPT * 2;
        while !loaded.is_set() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(loaded.is_set(), "never loaded after a look-up hung");
        assert!(seen.load(Ordering::SeqCst) >= 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_saved_view_loads_back_and_a_missing_one_is_empty() {
        let dir = std::env::temp_dir().join(format!("views-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("views").join("keys.json");
        assert!(load(&path).is_none());
        let mut known = BTreeMap::new();
        known.insert(
            "k1".to_owned(),
            Entry {
                key: "k1".into(),
                value: Bytes::from_static(br#"{"account":"a","revoked":false}"#),
                revision: 7,
            },
        );
        save(&path, &known);
        let back = load(&path).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].revision, 7);
        assert_eq!(&back[0].value[..], br#"{"account":"a","revoked":false}"#);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"not json").unwrap();
        assert!(load(&path).is_none());
        std::fs::remove_dir_all(dir).ok();
    }
}
