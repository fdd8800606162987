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
    if password.trim().is_empty() || repetitive(password) || sequential(password) {
        return Err(CpError::BadInput(
            "The password is a repeated pattern or a run of letters or digits; choose something less predictable.".into(),
        ));
    }
    if common(password, email) {
        return Err(CpError::BadInput(
            "The password is one of the most commonly used ones (or your email's name with digits); choose another.".into(),
        ));
    }
    Ok(())
}

/// A short unit repeated: `aaaaaaaaaa`, `abcabcabca`, `1212121212`.
fn repetitive(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    (1..=3).any(|period| {
        chars
            .iter()
            .enumerate()
            .all(|(i, c)| *c == chars[i % period])
    })
}

/// Each character one after (or before) the last: `abcdefghij`, `9876543210`.
fn sequential(password: &str) -> bool {
    let codes: Vec<i64> = password.chars().map(|c| i64::from(u32::from(c))).collect();
    [1, -1]
        .iter()
        .any(|step| codes.windows(2).all(|w| w[1] - w[0] == *step))
}

/// Passwords at least [`MIN_LEN`] long that lists of leaked passwords put
/// at the top, and keyboard walks.
const COMMON: &[&str] = &[
    "1234567890",
    "0123456789",
    "12345678910",
    "1234567891",
    "123456789a",
    "a123456789",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde",
    "q1w2e3r4t5",
    "q1w2e3r4t5y6",
    "qwertyuiop",
    "qwertyuiop1",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "asdfghjkl1",
    "asdfghjkl;",
    "zxcvbnm123",
    "zxcvbnm1234",
    "1qazxsw23edc",
    "qazwsxedcrfv",
    "!qaz2wsx3edc",
    "abc1234567",
    "abcd123456",
    "aa12345678",
    "passw0rd123",
    "p@ssw0rd12",
    "p@ssword123",
    "password10",
    "password11",
    "password12",
    "password123",
    "password1234",
    "password!1",
    "iloveyou12",
    "iloveyou123",
    "administrator",
    "welcome123",
    "welcome1234",
    "letmein123",
    "changeme123",
    "sunshine12",
    "sunshine123",
    "princess12",
    "princess123",
    "monkey12345",
    "football12",
    "football123",
    "baseball12",
    "baseball123",
    "dragon1234",
    "trustno1234",
    "starwars12",
    "starwars123",
    "superman12",
    "superman123",
    "michael123",
    "computer12",
    "computer123",
    "mustang123",
    "shadow1234",
    "master12345",
    "jennifer12",
    "hunter12345",
    "charlie123",
    "freedom123",
    "whatever12",
    "whatever123",
    "basketball",
    "basketball1",
    "1234qwerty",
    "qwertyqwerty",
    "chocolate1",
    "butterfly1",
    "1111111111a",
    "abcdefg123",
    "elizabeth1",
    "liverpool1",
    "babygirl12",
    "starwars1!",
    "welcome1!2",
    "Passw0rd!!",
];

/// Words that, with digits or symbols added, make the most guessed passwords.
const COMMON_STEMS: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssword",
    "p@ssw0rd",
    "qwerty",
    "letmein",
    "welcome",
    "admin",
    "iloveyou",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "shadow",
    "master",
    "superman",
    "michael",
    "charlie",
    "trustno",
    "starwars",
    "computer",
    "changeme",
    "secret",
    "modelrouter",
    "model router",
];

/// Whether `password` is a common one, a common stem with digits or
/// symbols, or the email's name with digits or symbols.
fn common(password: &str, email: &str) -> bool {
    let lower = password.to_lowercase();
    if COMMON.iter().any(|c| c.eq_ignore_ascii_case(&lower)) {
        return true;
    }
    let stem = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    let stem = stem.trim_start_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    COMMON_STEMS.contains(&stem) || (!local.is_empty() && stem == local)
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
        assert!(check_rules("correct horse battery staple", "a@b.c").is_ok());
        for weak in [
            "          ",
            "aaaaaaaaaaaa",
            "abcabcabcabc",
            "1212121212",
            "abcdefghijk",
            "9876543210",
            "1234567890",
            "qwertyuiop",
            "Password123",
            "password2026!",
            "!!Welcome2024",
            "1qaz2wsx3edc",
        ] {
            assert!(check_rules(weak, "a@b.c").is_err(), "{weak:?} was accepted");
        }
        assert!(check_rules("jane.doe1984", "jane.doe@example.com").is_err());
        assert!(check_rules("jane.doe1984", "someone@example.com").is_ok());
    }
}
