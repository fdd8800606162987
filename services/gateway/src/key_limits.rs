//! Each API key's own limits (`events::KeyLimits`, set by an account owner
//! and followed from the control plane's `keys` bucket): expiry (401
//! `key_expired`), allowed tiers and models (403 `model_not_allowed`), and
//! requests and tokens per minute (429 `key_rate_limited` /
//! `key_tokens_limited`, with `Retry-After`).
//!
//! Per-minute limits are sliding windows of the last 60 seconds, kept per
//! gateway process: a key's requests are counted when admitted, its tokens
//! (input and output, as billed) when the request ends. With N gateway
//! replicas behind a balancer, a key can get up to N times its per-minute
//! limit in the worst case (each replica admits its share); one process
//! (`modelrouter up`) enforces it exactly. Only keys with a per-minute
//! limit are tracked, so keys without one cost nothing here.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use events::KeyLimits;

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

/// The per-minute windows of the keys that have per-minute limits.
#[derive(Default)]
pub struct KeyMeter {
    windows: Mutex<HashMap<String, Window>>,
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
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(caller.key.clone()).or_default();
        window.forget_before(now.checked_sub(WINDOW).unwrap_or(now));
        if let (Some(tpm), Some(&(oldest, _))) = (limits.tpm, window.tokens.front()) {
            if window.token_sum >= u64::from(tpm) {
                return Err(GatewayError::KeyTokensLimited {
                    per_minute: tpm,
                    retry_after_s: retry_after(oldest, now),
                });
            }
        }
        if let Some(rpm) = limits.rpm {
            if window.requests.len() >= rpm as usize {
                let oldest = window.requests.front().copied().unwrap_or(now);
                return Err(GatewayError::KeyRateLimited {
                    per_minute: rpm,
                    retry_after_s: retry_after(oldest, now),
                });
            }
            window.requests.push_back(now);
        }
        Ok(())
    }

    /// Counts the tokens a request of `caller` used (when it has a
    /// tokens-per-minute limit).
    pub fn used(&self, caller: &Caller, tokens: u64, now: Instant) {
        if caller.limits.tpm.is_none() || tokens == 0 {
            return;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(caller.key.clone()).or_default();
        window.tokens.push_back((now, tokens));
        window.token_sum += tokens;
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
