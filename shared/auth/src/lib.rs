//! API keys: `mr_sk_` followed by 40 random base62 characters (238 bits).
//!
//! Keys are stored and compared only as HMAC-SHA256 under a deployment-wide
//! secret (the "key-hash secret"), never in plaintext and never with a
//! password hash. A password hash such as argon2 is slow on purpose, to make
//! guessing low-entropy passwords expensive; a key has 238 random bits, so
//! guessing is hopeless already, and argon2's ~50 ms per check on every API
//! request would cap a gateway at a few dozen requests per second per core.
//! The HMAC costs about a microsecond, and unlike a bare SHA-256 a leaked
//! table of digests cannot even be checked against candidate keys without
//! the secret.

use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sha2::Sha256;

/// The prefix every Model Router API key starts with.
pub const KEY_PREFIX: &str = "mr_sk_";
const RANDOM_CHARS: usize = 40;

/// A fresh random API key.
pub fn generate_key() -> String {
    format!(
        "{KEY_PREFIX}{}",
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, RANDOM_CHARS)
    )
}

/// Whether `key` has the shape of a Model Router API key.
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.len() >= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// How a key is shown after creation: its first ten characters and last four.
pub fn display_parts(key: &str) -> (String, String) {
    let prefix: String = key.chars().take(KEY_PREFIX.len() + 4).collect();
    let last_four: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (prefix, last_four)
}

/// A key's id: the first 12 hex characters of its digest. Safe to log and
/// to put in usage events.
pub fn key_id(digest_hex: &str) -> String {
    digest_hex.chars().take(12).collect()
}

/// Why a key-hash secret is not usable.
#[derive(Debug, PartialEq, Eq)]
pub struct WeakSecret;

impl std::fmt::Display for WeakSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the key-hash secret must be at least 32 bytes")
    }
}

impl std::error::Error for WeakSecret {}

/// Keyed digests of API keys under one deployment's secret.
#[derive(Clone)]
pub struct KeyHasher {
    keyed: Hmac<Sha256>,
}

impl KeyHasher {
    /// A hasher for `secret` (at least 32 bytes).
    pub fn new(secret: &[u8]) -> Result<KeyHasher, WeakSecret> {
        if secret.len() < 32 {
            return Err(WeakSecret);
        }
        let keyed = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WeakSecret)?;
        Ok(KeyHasher { keyed })
    }

    /// A hasher with a fresh random secret (tests, single-process setups).
    pub fn random() -> KeyHasher {
        KeyHasher::new(&random_secret()).unwrap_or_else(|_| unreachable!("64 bytes is enough"))
    }

    /// The digest of `key`.
    pub fn digest(&self, key: &str) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The digest of `key`, hex-encoded (as stored and published).
    pub fn digest_hex(&self, key: &str) -> String {
        hex::encode(self.digest(key))
    }
}

/// 64 random bytes, hex-encoded: a new key-hash or session secret.
pub fn random_secret_hex() -> String {
    hex::encode(random_secret())
}

fn random_secret() -> [u8; 64] {
    let mut secret = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape() {
        let key = generate_key();
        assert!(is_well_formed(&key));
        assert_eq!(key.len(), KEY_PREFIX.len() + RANDOM_CHARS);
        assert_ne!(generate_key(), key);
        assert!(!is_well_formed("mr_sk_short"));
        assert!(!is_well_formed(&key.replace("mr_sk_", "sk-")));
        let (prefix, last_four) = display_parts(&key);
        assert!(key.starts_with(&prefix) && key.ends_with(&last_four));
        assert_eq!((prefix.len(), last_four.len()), (10, 4));
    }

    #[test]
    fn digests_depend_on_the_secret() {
        let key = generate_key();
        let a = KeyHasher::new(&[1u8; 32]).unwrap();
        let b = KeyHasher::new(&[2u8; 32]).unwrap();
        assert_eq!(a.digest_hex(&key), a.digest_hex(&key));
        assert_ne!(a.digest_hex(&key), b.digest_hex(&key));
        assert_eq!(a.digest_hex(&key).len(), 64);
        assert_eq!(key_id(&a.digest_hex(&key)).len(), 12);
        assert_eq!(KeyHasher::new(&[0u8; 31]).err(), Some(WeakSecret));
    }
}
