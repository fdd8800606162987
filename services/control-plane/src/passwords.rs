//! Passwords: the rules they must meet, and argon2id hashing (parameters in
//! [`ControlPlaneConfig`](crate::ControlPlaneConfig)), run off the async
//! threads because each hash deliberately takes tens of milliseconds.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::CpError;

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 10;
/// Longest accepted password, in characters (bounds the hashing work).
pub const MAX_LEN: usize = 128;

/// Why `password` is not acceptable for `email`, if it is not.
pub fn check_rules(password: &str, email: &str) -> Result<(), CpError> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(CpError::BadInput(format!(
            "The password must be at least {MIN_LEN} characters long."
        )));
    }
    if len > MAX_LEN {
        return Err(CpError::BadInput(format!(
            "The password must be at most {MAX_LEN} characters long."
        )));
    }
    if password.eq_ignore_ascii_case(email) {
        return Err(CpError::BadInput(
            "The password must not be your email address.".into(),
        ));
    }
    Ok(())
}

/// argon2id with this deployment's parameters.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A hash of nothing, verified against when the email is unknown so a
    /// failed login takes as long whether or not the account exists.
    decoy: String,
}

impl Passwords {
    /// Hashing with `memory_kib`, `iterations`, `parallelism`.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Passwords, CpError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| CpError::Internal(format!("argon2 parameters: {e}")))?;
        let mut passwords = Passwords {
            params,
            decoy: String::new(),
        };
        passwords.decoy = passwords.hash_now("decoy password")?;
        Ok(passwords)
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_now(&self, password: &str) -> Result<String, CpError> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        self.argon()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| CpError::Internal(format!("argon2: {e}")))
    }

    /// The PHC string of `password` (salt and parameters included).
    pub async fn hash(&self, password: String) -> Result<String, CpError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.hash_now(&password))
            .await
            .map_err(|e| CpError::Internal(e.to_string()))?
    }

    /// Whether `password` matches `stored` (a PHC string); `None` checks a
    /// decoy and is always false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let this = self.clone();
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.clone());
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|hash| {
                    this.argon()
                        .verify_password(password.as_bytes(), &hash)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let passwords = Passwords::new(1024, 1, 1).unwrap();
        let hash = passwords
            .hash("correct horse battery".into())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(
            passwords
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
        );
        assert!(
            !passwords
                .verify("wrong horse battery".into(), Some(hash))
                .await
        );
        assert!(!passwords.verify("decoy password".into(), None).await);
    }

    #[test]
    fn rules() {
        assert!(check_rules("short", "a@b.c").is_err());
        assert!(check_rules(&"x".repeat(129), "a@b.c").is_err());
        assert!(check_rules("someone@example.com", "someone@example.com").is_err());
        assert!(check_rules("long enough pass", "a@b.c").is_ok());
    }
}
