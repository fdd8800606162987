//! API keys: `mr_sk_` followed by 40 random base62 characters.
//!
//! Only SHA-256 digests are held. A key carries 238 bits of randomness, so a
//! fast digest is as safe as a slow password hash here and keeps the request
//! path free of argon2's deliberate cost.

use std::collections::HashSet;
use std::sync::RwLock;

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

/// The prefix every Model Router secret key starts with.
pub const KEY_PREFIX: &str = "mr_sk_";
const RANDOM_CHARS: usize = 40;

/// A fresh random API key.
pub fn generate_key() -> String {
    format!("{KEY_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rngs::OsRng, RANDOM_CHARS))
}

/// Whether `key` has the shape of a Model Router key.
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|rest| rest.len() >= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The digest stored for `key`, hex-encoded.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The set of keys the gateway accepts.
#[derive(Default)]
pub struct KeyRing {
    digests: RwLock<HashSet<String>>,
}

impl KeyRing {
    /// Accepts the key with this hex digest.
    pub fn insert_digest(&self, digest: String) {
        if let Ok(mut set) = self.digests.write() {
            set.insert(digest);
        }
    }

    /// Whether `key` is accepted.
    pub fn verify(&self, key: &str) -> bool {
        is_well_formed(key) && self.digests.read().is_ok_and(|set| set.contains(&digest(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_verify_and_others_do_not() {
        let ring = KeyRing::default();
        let key = generate_key();
        assert!(is_well_formed(&key));
        assert_eq!(key.len(), KEY_PREFIX.len() + RANDOM_CHARS);
        assert!(!ring.verify(&key));
        ring.insert_digest(digest(&key));
        assert!(ring.verify(&key));
        assert!(!ring.verify(&generate_key()));
        assert!(!ring.verify("mr_sk_short"));
        assert_ne!(generate_key(), generate_key());
    }
}
