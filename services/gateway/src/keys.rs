//! API keys: `mr_sk_` followed by 40 random base62 characters.
//!
//! Only SHA-256 digests are held. A key carries 238 bits of randomness, so a
//! fast digest is as safe as a slow password hash here and keeps the request
//! path free of argon2's deliberate cost.

use std::collections::HashMap;
use std::sync::RwLock;

use events::AccountId;
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

/// Who is calling: the account a key belongs to, and which key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account that pays.
    pub account: AccountId,
    /// The key's id: the first 12 hex characters of its digest (never the key).
    pub key: String,
}

/// The keys the gateway accepts, each with its account.
#[derive(Default)]
pub struct KeyRing {
    digests: RwLock<HashMap<[u8; 32], AccountId>>,
}

impl KeyRing {
    /// Accepts the key with this hex digest for `account`; `false` if it is
    /// not a SHA-256 hex digest.
    pub fn insert_digest(&self, digest: &str, account: AccountId) -> bool {
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(digest, &mut raw).is_err() {
            return false;
        }
        self.digests
            .write()
            .map(|mut map| map.insert(raw, account))
            .is_ok()
    }

    /// The caller `key` stands for, if it is accepted.
    pub fn verify(&self, key: &str) -> Option<Caller> {
        if !is_well_formed(key) {
            return None;
        }
        let digest = <[u8; 32]>::from(Sha256::digest(key.as_bytes()));
        let account = *self.digests.read().ok()?.get(&digest)?;
        Some(Caller {
            account,
            key: hex::encode(&digest[..6]),
        })
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
        let account = AccountId::new();
        assert!(ring.verify(&key).is_none());
        assert!(ring.insert_digest(&digest(&key), account));
        let caller = ring.verify(&key).unwrap();
        assert_eq!(caller.account, account);
        assert_eq!(caller.key, digest(&key)[..12]);
        assert!(!ring.insert_digest("not hex", account));
        assert!(ring.verify(&generate_key()).is_none());
        assert!(ring.verify("mr_sk_short").is_none());
        assert_ne!(generate_key(), generate_key());
    }
}
