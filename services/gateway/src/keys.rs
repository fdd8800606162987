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
    format!(
        "{KEY_PREFIX}{}",
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, RANDOM_CHARS)
    )
}

/// Whether `key` has the shape of a Model Router key.
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.len() >= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The digest stored for `key`, hex-encoded.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The set of keys the gateway accepts.
#[derive(Default)]
pub struct KeyRing {
    digests: RwLock<HashSet<[u8; 32]>>,
}

impl KeyRing {
    /// Accepts the key with this hex digest; `false` if it is not a SHA-256 hex digest.
    pub fn insert_digest(&self, digest: &str) -> bool {
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(digest, &mut raw).is_err() {
            return false;
        }
        self.digests.write().map(|mut set| set.insert(raw)).is_ok()
    }

    /// Whether `key` is accepted.
    pub fn verify(&self, key: &str) -> bool {
        is_well_formed(key)
            && self
                .digests
                .read()
                .is_ok_and(|set| set.contains(&<[u8; 32]>::from(Sha256::digest(key.as_bytes()))))
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
        assert!(ring.insert_digest(&digest(&key)));
        assert!(ring.verify(&key));
        assert!(!ring.insert_digest("not hex"));
        assert!(!ring.verify(&generate_key()));
        assert!(!ring.verify("mr_sk_short"));
        assert_ne!(generate_key(), generate_key());
    }
}
