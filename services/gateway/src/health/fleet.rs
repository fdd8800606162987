//! Breakers shared by every gateway replica.
//!
//! Each replica still counts its own attempts and decides by itself when a
//! breaker trips; the decision then spreads. Every transition (open with its
//! cool-down, half-open, closed) and every Retry-After cool-down is put in
//! the event log's `breakers` bucket, one key per breaker, and every replica
//! watches the bucket:
//!
//! - *open until T* opens the same breaker here until T (a breaker already
//!   open longer stays so), so no replica keeps sending traffic a sick
//!   model has already failed on another;
//! - *closed* (a half-open probe succeeded somewhere) closes it here;
//! - *half-open* is only reported: each replica half-opens on its own when T
//!   passes, and the first probe to succeed closes the breaker everywhere;
//! - *cooling down until T* holds the model back here until T, as the
//!   provider's Retry-After asked.
//!
//! A replica that starts late reads the bucket's current values first, so it
//! starts with the breakers that are open now. Times travel as wall-clock
//! milliseconds, so replicas' clocks must agree (NTP) to well under a
//! cool-down. A replica ignores its own entries (by process instance), and
//! what it applies from others is not published again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::{CatalogHandle, ProviderId};
use eventlog::{EventLog, LogError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Health, Monitored};
use crate::follow::{follow, Source};

/// The event log bucket holding the current state of every shared breaker.
pub const BREAKERS_BUCKET: &str = "breakers";

/// The longest another replica's open or cool-down is applied for here
/// (unless this replica's own longest cool-down is longer): bounds the harm
/// of a replica whose clock is wrong.
pub const MAX_REMOTE_COOLING_MS: u64 = 3_600_000;

/// How long the publisher waits before retrying after the log refused a put.
const RETRY: Duration = Duration::from_millis(500);

/// Which breaker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A model's own breaker (and its Retry-After cool-down).
    Model { id: String },
    /// A provider-wide breaker.
    Provider { provider: ProviderId },
}

/// What happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Change {
    /// Opened until this wall-clock time (Unix milliseconds).
    Open { until_ms: i64 },
    /// The cool-down passed; probing.
    HalfOpen,
    /// A probe succeeded.
    Closed,
    /// The provider answered 429 with Retry-After: held back until then.
    CoolingDown { until_ms: i64 },
}

/// One entry of the bucket: a breaker's latest change and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct News {
    pub target: Target,
    pub change: Change,
    /// Why, for operators (`consecutive failures`, `provider key refused`…).
    pub reason: String,
    /// The gateway id of the replica that decided it.
    pub replica: String,
    /// That replica's process instance (unique per start).
    pub instance: String,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

impl News {
    /// Its key in the bucket: breakers and cool-downs apart, model ids
    /// hex-encoded (they hold characters keys may not, like `:`).
    pub fn key(&self) -> String {
        let kind = match self.change {
            Change::CoolingDown { .. } => "cooling",
            _ => "breaker",
        };
        match &self.target {
            Target::Model { id } => format!("{kind}.model.{}", hex::encode(id)),
            Target::Provider { provider } => format!("{kind}.provider.{provider}"),
        }
    }
}

/// Who this replica is, and where its news goes.
pub(super) struct Sharing {
    pub(super) replica: String,
    pub(super) instance: String,
    pub(super) out: mpsc::UnboundedSender<News>,
}

/// Now in Unix milliseconds.
pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The local instant of the wall-clock time `at_ms`.
pub(super) fn instant_of(at_ms: i64) -> Instant {
    let ahead = at_ms.saturating_sub(now_ms());
    Instant::now() + Duration::from_millis(ahead.max(0) as u64)
}

/// Shares `health`'s breakers with every replica on `log`: publishes this
/// replica's transitions and applies the others' (models looked up in
/// `catalog`). Returns once the bucket's current state is applied (or, with
/// the log unreachable, the copy saved under `data_dir`).
pub async fn share(
    health: &Health,
    replica: &str,
    instance: &str,
    log: Arc<dyn EventLog>,
    catalog: Arc<CatalogHandle>,
    data_dir: Option<&Path>,
) -> Result<(), LogError> {
    let (out, news) = mpsc::unbounded_channel();
    let sharing = Sharing {
        replica: replica.to_owned(),
        instance: instance.to_owned(),
        out,
    };
    if health.inner.sharing.set(sharing).is_err() {
        return Ok(());
    }
    tokio::spawn(publish(Arc::clone(&log), news));
    let health = health.clone();
    let own = instance.to_owned();
    follow(
        Source::new(log, BREAKERS_BUCKET, data_dir),
        move |entry| match serde_json::from_slice::<News>(&entry.value) {
            Ok(news) if news.instance == own => {}
            Ok(news) => {
                let snapshot = catalog.snapshot();
                let model: Option<&dyn Monitored> = match &news.target {
                    Target::Model { id } => snapshot
                        .model(id)
                        .map(|m| m.as_ref() as &dyn Monitored)
                        .or_else(|| {
                            snapshot
                                .embedding_model(id)
                                .map(|m| m.as_ref() as &dyn Monitored)
                        }),
                    Target::Provider { .. } => None,
                };
                health.apply(&news, model);
            }
            Err(e) => tracing::warn!(error = %e, key = %entry.key, "unreadable breaker entry"),
        },
    )
    .await
}

/// Puts every change in the bucket, latest per key first-come; what the log
/// refuses is kept (only the latest per key) and retried.
async fn publish(log: Arc<dyn EventLog>, mut news: mpsc::UnboundedReceiver<News>) {
    let mut pending: HashMap<String, News> = HashMap::new();
    loop {
        if pending.is_empty() {
            match news.recv().await {
                Some(item) => {
                    pending.insert(item.key(), item);
                }
                None => return,
            }
        }
        while let Ok(item) = news.try_recv() {
            pending.insert(item.key(), item);
        }
        let bucket = match log.bucket(BREAKERS_BUCKET).await {
            Ok(bucket) => bucket,
            Err(e) => {
                tracing::debug!(error = %e, "cannot reach the breakers bucket; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut failed = false;
        let keys: Vec<String> = pending.keys().cloned().collect();
        for key in keys {
            let Some(item) = pending.get(&key) else {
                continue;
            };
            let value = match serde_json::to_vec(item) {
                Ok(value) => value,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode breaker news");
                    pending.remove(&key);
                    continue;
                }
            };
            match bucket.put(&key, &value).await {
                Ok(_) => {
                    pending.remove(&key);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot publish a breaker change; retrying");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            tokio::time::sleep(RETRY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::breaker::BreakerConfig;
    use crate::health::latency::LatencyConfig;
    use crate::health::Expect;

    fn news(change: Change) -> News {
        News {
            target: Target::Model {
                id: "gpt-4.1".into(),
            },
            change,
            reason: "failures".into(),
            replica: "gw-a".into(),
            instance: "other".into(),
            at_ms: now_ms(),
        }
    }

    #[test]
    fn another_replicas_open_and_close_apply_here_and_an_expired_open_does_not() {
        let catalog = catalog::Catalog::builtin();
        let model = catalog.model("gpt-4.1").unwrap();
        let health = Health::new(BreakerConfig::default(), LatencyConfig::default());
        let expect = Expect {
            stream: false,
            output_tokens: Some(10),
        };
        health.apply(
            &news(Change::Open {
                until_ms: now_ms() - 1,
            }),
            Some(model.as_ref()),
        );
        assert_eq!(
            health.circuit("gpt-4.1"),
            events::CircuitState::Closed,
            "an open that already ended"
        );
        let open = Change::Open {
            until_ms: now_ms() + 60_000,
        };
        health.apply(&news(open), Some(model.as_ref()));
        assert_eq!(health.circuit("gpt-4.1"), events::CircuitState::Open);
        let skip = health
            .admit(model.as_ref(), expect)
            .err()
            .expect("turned away");
        assert!(skip.retry_in > Duration::from_secs(50), "{skip:?}");
        let report = health.report([model.as_ref() as &dyn Monitored]);
        assert_eq!(report.models[0].tripped_by.as_deref(), Some("gw-a"));
        health.apply(&news(Change::Closed), Some(model.as_ref()));
        assert_eq!(health.circuit("gpt-4.1"), events::CircuitState::Closed);
        assert!(health.admit(model.as_ref(), expect).is_ok());
        let report = health.report([model.as_ref() as &dyn Monitored]);
        assert_eq!(report.models[0].tripped_by, None);
    }

    #[test]
    fn a_far_future_open_from_a_replica_with_a_wrong_clock_is_bounded() {
        let catalog = catalog::Catalog::builtin();
        let model = catalog.model("gpt-4.1").unwrap();
        let health = Health::new(BreakerConfig::default(), LatencyConfig::default());
        let days = Change::Open {
            until_ms: now_ms() + 30 * 86_400_000,
        };
        health.apply(&news(days), Some(model.as_ref()));
        let expect = Expect {
            stream: false,
            output_tokens: Some(10),
        };
        let skip = health.admit(model.as_ref(), expect).err().expect("open");
        assert!(
            skip.retry_in <= Duration::from_millis(MAX_REMOTE_COOLING_MS),
            "{skip:?}"
        );
    }

    #[test]
    fn a_cool_down_from_another_replica_holds_the_model_back_here() {
        let catalog = catalog::Catalog::builtin();
        let model = catalog.model("gpt-4.1").unwrap();
        let health = Health::new(BreakerConfig::default(), LatencyConfig::default());
        let cooling = Change::CoolingDown {
            until_ms: now_ms() + 30_000,
        };
        health.apply(&news(cooling), Some(model.as_ref()));
        let expect = Expect {
            stream: true,
            output_tokens: None,
        };
        let skip = health
            .admit(model.as_ref(), expect)
            .err()
            .expect("cooling down");
        assert!(skip.reason.contains("Retry-After"), "{skip:?}");
        assert_eq!(
            health.circuit("gpt-4.1"),
            events::CircuitState::Closed,
            "the breaker is untouched"
        );
    }

    #[test]
    fn keys_are_valid_bucket_keys_and_keep_breakers_and_cool_downs_apart() {
        let news = |change| News {
            target: Target::Model {
                id: "qwen.qwen3-32b-v1:0".into(),
            },
            change,
            reason: String::new(),
            replica: "gw-1".into(),
            instance: "i".into(),
            at_ms: 0,
        };
        let open = news(Change::Open { until_ms: 1 }).key();
        let cooling = news(Change::CoolingDown { until_ms: 1 }).key();
        assert_ne!(open, cooling);
        assert_eq!(open, news(Change::Closed).key());
        for key in [open, cooling] {
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.=/".contains(c)),
                "{key}"
            );
        }
    }
}
