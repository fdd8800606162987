//! Each API key's own limits (`events::KeyLimits`, set by an account owner
//! and followed from the control plane's `keys` bucket): expiry (401
//! `key_expired`), allowed tiers and models (403 `model_not_allowed`), and
//! requests and tokens per minute (429 `key_rate_limited` /
//! `key_tokens_limited`, with `Retry-After`).
//!
//! Per-minute limits count a key's requests when admitted and its tokens
//! (input and output, as billed) when the request ends. This process's own
//! use is a sliding window of the last 60 seconds, exact. Other replicas'
//! use comes from the `key_rates` bucket, where every gateway process
//! publishes its per-key counts of the current and the previous UTC minute
//! (at most every [`PUBLISH_EVERY`], when they changed); it is estimated for
//! the last 60 seconds as the current minute's count plus the previous
//! minute's share still inside the window. So, as for the daily limit, a
//! fleet overshoots a key's limit by at most what the other replicas admit
//! before their counts arrive (one publish interval plus the bucket's
//! delivery), and one process (`modelrouter up`) enforces it exactly. Only
//! keys with a per-minute limit are counted, so other keys cost nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use eventlog::EventLog;
use events::KeyLimits;
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::keys::Caller;

const WINDOW: Duration = Duration::from_secs(60);

/// One key's last minute.
#[derive(Default)]
struct Window {
    requests: VecDeque<Instant>,
    tokens: VecDeque<(Instant, u64)>,
    token_sum: u64,
}

impl Window {
    fn forget_before(&mut self, start: Instant) {
        while self.requests.front().is_some_and(|&t| t < start) {
            self.requests.pop_front();
        }
        while let Some(&(t, n)) = self.tokens.front() {
            if t >= start {
                break;
            }
            self.token_sum -= n;
            self.tokens.pop_front();
        }
    }
}

/// Seconds until `oldest` leaves the window (at least 1).
fn retry_after(oldest: Instant, now: Instant) -> u64 {
    (oldest + WINDOW)
        .saturating_duration_since(now)
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64
}

/// The bucket of per-process, per-key counts of the current minute.
pub const KEY_RATES_BUCKET: &str = "key_rates";
/// The most often a process publishes its counts.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// A key's counts in one process: requests and tokens of `minute` (Unix
/// minutes, UTC) and of the minute before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Minutes {
    minute: i64,
    requests: u64,
    tokens: u64,
    prev_requests: u64,
    prev_tokens: u64,
}

impl Minutes {
    /// The counts as of `minute` (older minutes roll off).
    fn at(self, minute: i64) -> Minutes {
        match minute - self.minute {
            0 => self,
            1 => Minutes {
                minute,
                prev_requests: self.requests,
                prev_tokens: self.tokens,
                ..Minutes::default()
            },
            _ => Minutes {
                minute,
                ..Minutes::default()
            },
        }
    }

    /// The estimated (requests, tokens) of the 60 seconds before `now_ms`.
    fn last_minute(self, now_ms: i64) -> (u64, u64) {
        let now = self.at(now_ms.div_euclid(60_000));
        let left = 1.0 - now_ms.rem_euclid(60_000) as f64 / 60_000.0;
        (
            now.requests + (now.prev_requests as f64 * left) as u64,
            now.tokens + (now.prev_tokens as f64 * left) as u64,
        )
    }
}

/// What one process publishes: its counts per key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Published {
    keys: HashMap<String, Minutes>,
}

/// The per-minute windows of the keys that have per-minute limits.
#[derive(Default)]
pub struct KeyMeter {
    windows: Mutex<HashMap<String, Window>>,
    /// This process's counts as it publishes them.
    minutes: Mutex<HashMap<String, Minutes>>,
    /// The other processes' counts: instance → key → counts.
    others: Mutex<HashMap<String, HashMap<String, Minutes>>>,
    /// Whether `minutes` changed since the last publish.
    changed: AtomicBool,
    /// Woken when `minutes` changes after a publish: the publisher sleeps
    /// until then, so a process whose keys have no per-minute limit (or no
    /// traffic) never wakes for it.
    wake: tokio::sync::Notify,
    /// This process's instance, once it shares.
    instance: OnceLock<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeyMeter {
    /// Admits one request of `caller` now, or says why not: its requests
    /// or tokens of the last minute are spent. (Expiry is checked with the
    /// key itself, on every endpoint.)
    pub fn admit(&self, caller: &Caller, now: Instant) -> Result<(), GatewayError> {
        let limits = &caller.limits;
        if limits.rpm.is_none() && limits.tpm.is_none() {
            return Ok(());
        }
        let wall = now_ms();
        let (other_requests, other_tokens) = self.others_of(&caller.key, wall);
        // Refused for the others' use alone: their counts fall as the
        // minute turns.
        let minute_left = (60 - wall.rem_euclid(60_000) / 1_000).max(1) as u64;
        let mut windows = lock(&self.windows);
        let window = windows.entry(caller.key.clone()).or_default();
        window.forget_before(now.checked_sub(WINDOW).unwrap_or(now));
        if let Some(tpm) = limits.tpm {
            if window.token_sum + other_tokens >= u64::from(tpm) {
                let retry_after_s = match window.tokens.front() {
                    Some(&(oldest, _)) if window.token_sum >= u64::from(tpm) => {
                        retry_after(oldest, now)
                    }
                    _ => minute_left,
                };
                return Err(GatewayError::KeyTokensLimited {
                    per_minute: tpm,
                    retry_after_s,
                });
            }
        }
        if let Some(rpm) = limits.rpm {
            if window.requests.len() as u64 + other_requests >= u64::from(rpm) {
                let retry_after_s = match window.requests.front() {
                    Some(&oldest) if window.requests.len() >= rpm as usize => {
                        retry_after(oldest, now)
                    }
                    _ => minute_left,
                };
                return Err(GatewayError::KeyRateLimited {
                    per_minute: rpm,
                    retry_after_s,
                });
            }
            window.requests.push_back(now);
        }
        drop(windows);
        self.count(&caller.key, wall, 1, 0);
        Ok(())
    }

    /// Adds to this process's published counts of `key`.
    fn count(&self, key: &str, wall: i64, requests: u64, tokens: u64) {
        let minute = wall.div_euclid(60_000);
        let mut minutes = lock(&self.minutes);
        let entry = minutes.entry(key.to_owned()).or_default();
        let mut now = entry.at(minute);
        now.requests += requests;
        now.tokens += tokens;
        *entry = now;
        drop(minutes);
        if !self.changed.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// The other gateway processes' estimated (requests, tokens) of `key`
    /// in the last 60 seconds, as this one knows them now.
    pub fn fleet_use(&self, key: &str) -> (u64, u64) {
        self.others_of(key, now_ms())
    }

    fn others_of(&self, key: &str, wall: i64) -> (u64, u64) {
        lock(&self.others)
            .values()
            .filter_map(|keys| keys.get(key))
            .map(|m| m.last_minute(wall))
            .fold((0, 0), |(r, t), (r2, t2)| (r + r2, t + t2))
    }

    /// Takes another process's published counts (its own are skipped).
    fn apply(&self, instance: &str, published: Published) {
        if self.instance.get().is_some_and(|own| own == instance) {
            return;
        }
        lock(&self.others).insert(instance.to_owned(), published.keys);
    }

    /// Forgets other processes with no count in this minute or the last
    /// (gone, or idle): each restart is a new process, so they add up.
    fn forget_idle(&self) {
        let minute = now_ms().div_euclid(60_000);
        lock(&self.others).retain(|_, keys| keys.values().any(|m| minute - m.minute <= 1));
    }

    /// This process's counts to publish, if they changed: keys active in
    /// the current or the previous minute.
    fn to_publish(&self) -> Option<Vec<u8>> {
        if !self.changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        let minute = now_ms().div_euclid(60_000);
        let mut minutes = lock(&self.minutes);
        minutes.retain(|_, m| minute - m.minute <= 1);
        let published = Published {
            keys: minutes
                .iter()
                .map(|(k, m)| (k.clone(), m.at(minute)))
                .collect(),
        };
        serde_json::to_vec(&published).ok()
    }

    /// Counts the tokens a request of `caller` used (when it has a
    /// tokens-per-minute limit).
    pub fn used(&self, caller: &Caller, tokens: u64, now: Instant) {
        if caller.limits.tpm.is_none() || tokens == 0 {
            return;
        }
        let mut windows = lock(&self.windows);
        let window = windows.entry(caller.key.clone()).or_default();
        window.tokens.push_back((now, tokens));
        window.token_sum += tokens;
        drop(windows);
        self.count(&caller.key, now_ms(), 0, tokens);
    }
}

/// Shares `meter`'s counts with every gateway process on `log` (this one
/// is `instance`): publishes them and follows the others', in the
/// background, for as long as the runtime runs. Best effort: while the log
/// is unreachable each process counts only its own use (and starts anyway).
pub fn share(meter: &Arc<KeyMeter>, instance: &str, log: Arc<dyn EventLog>) {
    if meter.instance.set(instance.to_owned()).is_err() {
        return;
    }
    let meter = Arc::clone(meter);
    let key = instance.to_owned();
    tokio::spawn(async move {
        loop {
            match log.bucket(KEY_RATES_BUCKET).await {
                Ok(bucket) => {
                    tokio::spawn(publish(Arc::clone(&meter), Arc::clone(&bucket), key));
                    follow(&meter, bucket).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "key rates bucket unreachable; counting this process only for now");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Puts this process's counts [`PUBLISH_EVERY`] after they change (so at
/// most that often), and sleeps while they do not.
async fn publish(meter: Arc<KeyMeter>, bucket: Arc<dyn eventlog::Bucket>, key: String) {
    loop {
        if !meter.changed.load(Ordering::Acquire) {
            meter.wake.notified().await;
        }
        tokio::time::sleep(PUBLISH_EVERY).await;
        meter.forget_idle();
        if let Some(bytes) = meter.to_publish() {
            if let Err(e) = bucket.put(&key, &bytes).await {
                tracing::warn!(error = %e, "key rates not published; trying again");
                meter.changed.store(true, Ordering::Release);
            }
        }
    }
}

/// Takes the others' counts: the bucket's current values, then each change,
/// watching again after an error.
async fn follow(meter: &KeyMeter, bucket: Arc<dyn eventlog::Bucket>) {
    use futures_util::StreamExt;
    loop {
        if let Ok(entries) = bucket.snapshot().await {
            for entry in entries {
                if let Ok(published) = serde_json::from_slice(&entry.value) {
                    meter.apply(&entry.key, published);
                }
            }
        }
        match bucket.watch().await {
            Ok(mut entries) => {
                while let Some(Ok(entry)) = entries.next().await {
                    match serde_json::from_slice(&entry.value) {
                        Ok(published) => meter.apply(&entry.key, published),
                        Err(e) => tracing::warn!(error = %e, "unreadable key rates"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "key rates not followed; trying again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether `limits` let a request ask for `model` (a tier, `auto` or a
/// model id); `models` names the fallbacks also asked for.
pub fn check_allowed(limits: &KeyLimits, asked: &[&str]) -> Result<(), GatewayError> {
    if limits.allowed.is_empty() {
        return Ok(());
    }
    match asked
        .iter()
        .find(|a| !limits.allowed.iter().any(|l| l == *a))
    {
        None => Ok(()),
        Some(asked) => Err(GatewayError::ModelNotAllowed {
            asked: (*asked).to_owned(),
            allowed: limits.allowed.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn caller(limits: KeyLimits) -> Caller {
        Caller {
            account: events::AccountId::new(),
            key: "k1".into(),
            limits: Arc::new(limits),
        }
    }

    #[test]
    fn requests_per_minute_slide() {
        let meter = KeyMeter::default();
        let c = caller(KeyLimits {
            rpm: Some(2),
            ..KeyLimits::default()
        });
        let t0 = Instant::now();
        meter.admit(&c, t0).unwrap();
        meter.admit(&c, t0 + Duration::from_secs(10)).unwrap();
        match meter.admit(&c, t0 + Duration::from_secs(20)) {
            Err(GatewayError::KeyRateLimited { retry_after_s, .. }) => {
                assert_eq!(retry_after_s, 40)
            }
            other => panic!("{other:?}"),
        }
        meter.admit(&c, t0 + Duration::from_secs(61)).unwrap();
    }

    #[test]
    fn tokens_per_minute_count_what_was_used() {
        let meter = KeyMeter::default();
        let c = caller(KeyLimits {
            tpm: Some(100),
            ..KeyLimits::default()
        });
        let t0 = Instant::now();
        meter.admit(&c, t0).unwrap();
        meter.used(&c, 150, t0);
        assert!(matches!(
            meter.admit(&c, t0 + Duration::from_secs(1)),
            Err(GatewayError::KeyTokensLimited { .. })
        ));
        meter.admit(&c, t0 + Duration::from_secs(61)).unwrap();
    }

    #[test]
    fn other_processes_counts_fill_the_window() {
        let meter = KeyMeter::default();
        let c = caller(KeyLimits {
            rpm: Some(5),
            ..KeyLimits::default()
        });
        let minute = now_ms().div_euclid(60_000);
        let other = Minutes {
            minute,
            requests: 5,
            ..Minutes::default()
        };
        meter.apply(
            "gw-b",
            Published {
                keys: HashMap::from([("k1".to_owned(), other)]),
            },
        );
        assert!(matches!(
            meter.admit(&c, Instant::now()),
            Err(GatewayError::KeyRateLimited { .. })
        ));
        // Counts two minutes old are gone, and so is their process.
        let stale = Minutes {
            minute: minute - 2,
            ..other
        };
        meter.apply(
            "gw-b",
            Published {
                keys: HashMap::from([("k1".to_owned(), stale)]),
            },
        );
        meter.admit(&c, Instant::now()).unwrap();
        meter.forget_idle();
        assert!(
            lock(&meter.others).is_empty(),
            "an idle process is forgotten"
        );
        // The previous minute counts for its share still in the window.
        let at = 90_000; // 30 s into minute 1
        let prev = Minutes {
            minute: 0,
            requests: 10,
            ..Minutes::default()
        };
        assert_eq!(prev.last_minute(at), (5, 0));
    }

    #[test]
    fn other_models_are_refused() {
        let only = KeyLimits {
            allowed: vec!["economy".into()],
            ..KeyLimits::default()
        };
        check_allowed(&only, &["economy"]).unwrap();
        assert!(matches!(
            check_allowed(&only, &["economy", "premium"]),
            Err(GatewayError::ModelNotAllowed { .. })
        ));
        check_allowed(&KeyLimits::default(), &["premium"]).unwrap();
    }
}
