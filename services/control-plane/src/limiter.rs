//! Attempts per client address per minute, for sign-up and login: slows
//! password guessing and sign-up floods without locking real users out
//! for long. A GCRA bucket per address (the `governor` crate): `per_minute`
//! attempts at once, then one per 60/`per_minute` seconds.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::CpError;

/// Addresses remembered before those whose bucket is full again are forgotten.
const FORGET_AFTER_KEYS: usize = 100_000;

/// A bucket per address.
pub struct AttemptLimiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
}

impl AttemptLimiter {
    /// At most `per_minute` attempts per address.
    pub fn new(per_minute: u32) -> AttemptLimiter {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        AttemptLimiter {
            buckets: DefaultKeyedRateLimiter::hashmap(Quota::per_minute(per_minute)),
        }
    }

    /// Counts one attempt from `ip`; 429 with the wait when over.
    pub fn attempt(&self, ip: IpAddr) -> Result<(), CpError> {
        if self.buckets.len() > FORGET_AFTER_KEYS {
            self.buckets.retain_recent();
        }
        self.buckets.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            CpError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address() {
        let limiter = AttemptLimiter::new(2);
        let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        limiter.attempt(a).unwrap();
        limiter.attempt(a).unwrap();
        assert!(matches!(
            limiter.attempt(a),
            Err(CpError::RateLimited(1..=30))
        ));
        limiter.attempt(b).unwrap();
    }
}
