//! The API keys a gateway accepts, each with its account.
//!
//! Keys are held only as keyed digests (see the `auth` crate for why a
//! keyed hash and not a password hash). The ring starts from the keys in the
//! data dir (a gateway without a control plane) and follows the `keys`
//! bucket the control plane maintains, so an issued key works and a revoked
//! one stops on every gateway as soon as the change is watched here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use auth::KeyHasher;
use eventlog::LogError;
use events::{AccountId, KeyLimits, KeyView};

pub use auth::{generate_key, is_well_formed, KEY_PREFIX};

/// Who is calling: the account a key belongs to, and which key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account that pays.
    pub account: AccountId,
    /// The key's id: the first 12 hex characters of its digest (never the key).
    pub key: String,
    /// The key's own limits (shared by every request of the key).
    pub limits: Arc<KeyLimits>,
}

/// The keys the gateway accepts, each with its account.
pub struct KeyRing {
    hasher: KeyHasher,
    digests: RwLock<HashMap<[u8; 32], Entry>>,
}

/// What the ring holds per key digest.
type Entry = (AccountId, Arc<KeyLimits>);

impl Default for KeyRing {
    /// A ring with a random secret: only keys inserted through it work.
    fn default() -> Self {
        KeyRing::new(KeyHasher::random())
    }
}

impl KeyRing {
    /// An empty ring hashing keys with `hasher`.
    pub fn new(hasher: KeyHasher) -> KeyRing {
        KeyRing {
            hasher,
            digests: RwLock::default(),
        }
    }

    /// The hex digest this ring stores for `key`.
    pub fn digest(&self, key: &str) -> String {
        self.hasher.digest_hex(key)
    }

    /// Accepts `key` for `account`.
    pub fn insert_key(&self, key: &str, account: AccountId) {
        self.insert_digest(&self.digest(key), account);
    }

    /// Accepts the key with this hex digest for `account`; `false` if it is
    /// not a hex digest.
    pub fn insert_digest(&self, digest: &str, account: AccountId) -> bool {
        self.insert_limited(digest, account, KeyLimits::default())
    }

    /// Accepts the key with this hex digest for `account`, within `limits`.
    pub fn insert_limited(&self, digest: &str, account: AccountId, limits: KeyLimits) -> bool {
        let Some(raw) = raw_digest(digest) else {
            return false;
        };
        if let Ok(mut map) = self.digests.write() {
            map.insert(raw, (account, Arc::new(limits)));
        }
        true
    }

    /// Stops accepting the key with this hex digest.
    pub fn remove_digest(&self, digest: &str) {
        if let (Some(raw), Ok(mut map)) = (raw_digest(digest), self.digests.write()) {
            map.remove(&raw);
        }
    }

    /// The caller `key` stands for, if it is accepted.
    pub fn verify(&self, key: &str) -> Option<Caller> {
        if !is_well_formed(key) {
            return None;
        }
        let digest = self.hasher.digest(key);
        let (account, limits) = self.digests.read().ok()?.get(&digest).cloned()?;
        Some(Caller {
            account,
            key: hex::encode(&digest[..6]),
            limits,
        })
    }

    /// Follows the control plane's `keys` bucket (digest → [`KeyView`]):
    /// returns once every current key is in, then keeps following.
    pub async fn follow(self: &Arc<Self>, source: crate::follow::Source) -> Result<(), LogError> {
        let ring = Arc::clone(self);
        crate::follow::follow(source, move |entry| {
            match serde_json::from_slice::<KeyView>(&entry.value) {
                Ok(view) if view.revoked => ring.remove_digest(&entry.key),
                Ok(view) => {
                    ring.insert_limited(&entry.key, view.account, view.limits);
                }
                Err(e) => tracing::error!(error = %e, "unreadable key view"),
            }
        })
        .await
    }
}

fn raw_digest(digest: &str) -> Option<[u8; 32]> {
    let mut raw = [0u8; 32];
    hex::decode_to_slice(digest, &mut raw).ok()?;
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_verify_until_removed() {
        let ring = KeyRing::default();
        let key = generate_key();
        let account = AccountId::new();
        assert!(ring.verify(&key).is_none());
        assert!(ring.insert_digest(&ring.digest(&key), account));
        let caller = ring.verify(&key).unwrap();
        assert_eq!(caller.account, account);
        assert_eq!(caller.key, ring.digest(&key)[..12]);
        assert!(!ring.insert_digest("not hex", account));
        assert!(ring.verify(&generate_key()).is_none());
        assert!(ring.verify("mr_sk_short").is_none());
        ring.remove_digest(&ring.digest(&key));
        assert!(ring.verify(&key).is_none());
    }
}
