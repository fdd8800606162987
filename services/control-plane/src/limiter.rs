//! Attempts per client address per minute, for sign-up and login: slows
//! password guessing and sign-up floods without locking real users out
//! for long.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::CpError;

/// A sliding one-minute window per address.
pub struct AttemptLimiter {
    per_minute: usize,
    attempts: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl AttemptLimiter {
    /// At most `per_minute` attempts per address.
    pub fn new(per_minute: u32) -> AttemptLimiter {
        AttemptLimiter {
            per_minute: per_minute.max(1) as usize,
            attempts: Mutex::default(),
        }
    }

    /// Counts one attempt from `ip`; 429 with the wait when over.
    pub fn attempt(&self, ip: IpAddr) -> Result<(), CpError> {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let mut map = self
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            map.retain(|_, a| a.back().is_some_and(|&t| now.duration_since(t) < window));
        }
        let recent = map.entry(ip).or_default();
        while recent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= window)
        {
            recent.pop_front();
        }
        if recent.len() >= self.per_minute {
            let oldest = recent.front().copied().unwrap_or(now);
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Err(CpError::RateLimited(wait.as_secs().max(1)));
        }
        recent.push_back(now);
        Ok(())
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
            Err(CpError::RateLimited(1..=60))
        ));
        limiter.attempt(b).unwrap();
    }
}
