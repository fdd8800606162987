//! Users: sign-up, login (with a per-email back-off on failures),
//! passwords (changed by their user, reset by an operator's one-time link)
//! and the first account of a fresh installation. Users and their password
//! hashes are the control plane's own records, not events.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use events::{
    AccountId, AccountOpened, CreditsGranted, Envelope, Event, MemberJoined, Role, UserId,
};
use sqlx::Row;
use uuid::Uuid;

use super::{email, name, sha256_hex, NewKey};
use crate::error::CpError;
use crate::ControlPlane;

/// Failures in a row a login may have before it is slowed.
const FREE_FAILURES: u32 = 5;
/// The longest wait between two logins of one email.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long an operator's password-reset link works.
const RESET_TTL: chrono::Duration = chrono::Duration::hours(1);

/// Failed logins per email: after [`FREE_FAILURES`] in a row each further
/// attempt must wait 2, 4, 8… seconds (at most five minutes) after the last.
/// That slows guessing one account from many addresses (which the
/// per-address limit alone does not) without locking its owner out: the
/// wait stays short, and a success clears it.
#[derive(Default)]
pub struct LoginBackoff {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginBackoff {
    /// 429 with the wait when `email` must wait before its next attempt.
    pub fn check(&self, email: &str) -> Result<(), CpError> {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(&(count, last)) = failures.get(email) else {
            return Ok(());
        };
        let wait = Self::wait(count);
        let waited = last.elapsed();
        if waited < wait {
            return Err(CpError::RateLimited((wait - waited).as_secs().max(1)));
        }
        Ok(())
    }

    fn wait(failures: u32) -> Duration {
        if failures < FREE_FAILURES {
            return Duration::ZERO;
        }
        let doubling = (failures - FREE_FAILURES + 1).min(16);
        Duration::from_secs(1 << doubling).min(MAX_WAIT)
    }

    fn failed(&self, email: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() > 100_000 {
            failures.retain(|_, (_, last)| last.elapsed() < MAX_WAIT);
        }
        let entry = failures
            .entry(email.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    fn succeeded(&self, email: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(email);
    }
}

/// What a user who logged in must do first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLogin {
    Continue,
    /// The password was given to them (the first account's): choose one.
    ChangePassword,
}

impl ControlPlane {
    /// The user with `email` and their password hash.
    async fn user_by_email(&self, email: &str) -> Result<Option<(UserId, String)>, CpError> {
        let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.store.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let user = id
            .parse()
            .map(UserId)
            .map_err(|e: uuid::Error| CpError::Internal(e.to_string()))?;
        Ok(Some((user, row.try_get("password_hash")?)))
    }

    /// Creates a user with `password` (argon2id-hashed; rules checked by
    /// the caller); `None` when the email was taken meanwhile.
    pub(super) async fn create_user(
        &self,
        email: &str,
        password: String,
    ) -> Result<Option<UserId>, CpError> {
        let hash = self.passwords.hash(password).await?;
        let user = UserId(Uuid::new_v4());
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(user.to_string())
        .bind(email)
        .bind(hash)
        .bind(Utc::now().to_rfc3339())
        .execute(&self.store.pool)
        .await?;
        Ok((inserted.rows_affected() == 1).then_some(user))
    }

    /// Signs up: a new user owning a new account (with demo credits when
    /// configured); for an email that has a user, and only with that user's
    /// password, another account of theirs. `None` when nothing was opened
    /// (the email has a user and the password is not theirs): the caller
    /// answers exactly as for a sign-up that worked, so the form never
    /// tells whether an email is registered, and the person logs in next.
    pub async fn sign_up(
        &self,
        email_raw: &str,
        password: String,
        account_name: &str,
    ) -> Result<Option<(UserId, AccountId)>, CpError> {
        let email = email(email_raw)?;
        let account_name = name(account_name, "account name")?;
        crate::passwords::check_rules(&password, &email)?;
        // One argon2 computation either way (a hash, or a verification).
        let user = match self.user_by_email(&email).await? {
            Some((user, hash)) => self
                .passwords
                .verify(password, Some(hash))
                .await
                .then_some(user),
            None => self.create_user(&email, password).await?,
        };
        let Some(user) = user else {
            return Ok(None);
        };
        let account = self.open_account(user, &email, account_name).await?;
        Ok(Some((user, account)))
    }

    /// A new account owned by `user`, with the demo credits when configured.
    async fn open_account(
        &self,
        user: UserId,
        email: &str,
        account_name: String,
    ) -> Result<AccountId, CpError> {
        let account = AccountId::new();
        self.record(Event::AccountOpened(AccountOpened {
            account,
            name: account_name,
        }))
        .await?;
        self.record(Event::MemberJoined(MemberJoined {
            account,
            user,
            email: email.to_owned(),
            role: Role::Owner,
            invitation: None,
        }))
        .await?;
        if let Some(amount) = self.demo_credits {
            let mut grant = Envelope::new(Event::CreditsGranted(CreditsGranted {
                account,
                amount,
                reason: "demo credits (simulator mode)".into(),
            }));
            grant.id = Uuid::new_v5(&account.0, b"demo-credits");
            self.record_as(grant).await?;
        }
        Ok(account)
    }

    /// The user and account for a correct email and password, and what the
    /// user must do first. Failures are slowed per email (see [`LoginBackoff`]).
    pub async fn log_in(
        &self,
        email_raw: &str,
        password: String,
    ) -> Result<(UserId, AccountId, AfterLogin), CpError> {
        let wrong = || CpError::BadInput("The email or password is not right.".into());
        let email = email(email_raw).map_err(|_| wrong())?;
        self.logins.check(&email)?;
        let found = self.user_by_email(&email).await?;
        let (user, stored) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        if !self.passwords.verify(password, stored).await {
            self.logins.failed(&email);
            return Err(wrong());
        }
        self.logins.succeeded(&email);
        let user = user.ok_or_else(wrong)?;
        let account: Option<String> = sqlx::query_scalar(
            "SELECT account FROM members WHERE user_id = $1 ORDER BY joined_at LIMIT 1",
        )
        .bind(user.to_string())
        .fetch_optional(&self.store.pool)
        .await?;
        let account = account.and_then(|a| a.parse().ok()).ok_or_else(|| {
            CpError::Forbidden("This user is not a member of any account.".into())
        })?;
        let must_change: i64 =
            sqlx::query_scalar("SELECT must_change_password FROM users WHERE id = $1")
                .bind(user.to_string())
                .fetch_one(&self.store.pool)
                .await?;
        let next = if must_change != 0 {
            AfterLogin::ChangePassword
        } else {
            AfterLogin::Continue
        };
        Ok((user, account, next))
    }

    /// Changes `user`'s password after checking the current one; ends every
    /// session of the user and returns the new session epoch (the caller
    /// re-issues its own session in it, so only the other sessions end).
    pub async fn change_password(
        &self,
        user: UserId,
        current: String,
        new: String,
    ) -> Result<i64, CpError> {
        let row = sqlx::query("SELECT email, password_hash FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(&self.store.pool)
            .await?
            .ok_or(CpError::Unauthenticated)?;
        let email: String = row.try_get("email")?;
        if !self
            .passwords
            .verify(current, Some(row.try_get("password_hash")?))
            .await
        {
            return Err(CpError::BadInput(
                "The current password is not right.".into(),
            ));
        }
        crate::passwords::check_rules(&new, &email)?;
        self.set_password(user, new).await
    }

    /// Stores `password` for `user`, clears "must change", ends every
    /// session; the new session epoch.
    async fn set_password(&self, user: UserId, password: String) -> Result<i64, CpError> {
        let hash = self.passwords.hash(password).await?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = 0,
                 session_epoch = session_epoch + 1 WHERE id = $2",
        )
        .bind(hash)
        .bind(user.to_string())
        .execute(&self.store.pool)
        .await?;
        self.session_epoch(user).await
    }

    /// The user an unused, unexpired reset `token` is for, and their email.
    pub async fn reset_target(&self, token: &str) -> Result<(UserId, String), CpError> {
        let row = sqlx::query(
            "SELECT r.user_id, u.email FROM password_resets r JOIN users u ON u.id = r.user_id
             WHERE r.token_digest = $1 AND r.used_at IS NULL AND r.expires_at > $2",
        )
        .bind(sha256_hex(token))
        .bind(Utc::now().to_rfc3339())
        .fetch_optional(&self.store.pool)
        .await?
        .ok_or(CpError::NotFound)?;
        let id: String = row.try_get("user_id")?;
        let user = id
            .parse()
            .map(UserId)
            .map_err(|e: uuid::Error| CpError::Internal(e.to_string()))?;
        Ok((user, row.try_get("email")?))
    }

    /// Sets a new password through a reset `token` (once); every session of
    /// the user ends.
    pub async fn reset_password(&self, token: &str, password: String) -> Result<String, CpError> {
        let (user, email) = self.reset_target(token).await?;
        crate::passwords::check_rules(&password, &email)?;
        let used = sqlx::query(
            "UPDATE password_resets SET used_at = $2 WHERE token_digest = $1 AND used_at IS NULL",
        )
        .bind(sha256_hex(token))
        .bind(Utc::now().to_rfc3339())
        .execute(&self.store.pool)
        .await?;
        if used.rows_affected() != 1 {
            return Err(CpError::NotFound);
        }
        self.set_password(user, password).await?;
        Ok(email)
    }

    /// Whether `user` still has a password they were given.
    pub async fn must_change_password(&self, user: UserId) -> Result<bool, CpError> {
        let flag: Option<i64> =
            sqlx::query_scalar("SELECT must_change_password FROM users WHERE id = $1")
                .bind(user.to_string())
                .fetch_optional(&self.store.pool)
                .await?;
        Ok(flag.unwrap_or(0) != 0)
    }

    /// The session epoch of `user` (0 for an unknown user).
    pub async fn session_epoch(&self, user: UserId) -> Result<i64, CpError> {
        let epoch: Option<i64> =
            sqlx::query_scalar("SELECT session_epoch FROM users WHERE id = $1")
                .bind(user.to_string())
                .fetch_optional(&self.store.pool)
                .await?;
        Ok(epoch.unwrap_or(0))
    }

    /// Ends every session of `user` (logout).
    pub async fn end_sessions(&self, user: UserId) -> Result<(), CpError> {
        sqlx::query("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = $1")
            .bind(user.to_string())
            .execute(&self.store.pool)
            .await?;
        Ok(())
    }

    /// On a fresh installation, the first account: an operator with a
    /// random password (to be changed at first login) owning an account, its
    /// first API key (`key`, or a new one) and an admin key, returned to be
    /// printed once. `None` when a user exists already.
    pub async fn first_account(
        &self,
        email_raw: &str,
        key: Option<String>,
    ) -> Result<Option<FirstAccount>, CpError> {
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.store.pool)
            .await?;
        if users > 0 {
            return Ok(None);
        }
        let key = match key {
            Some(k) if auth::is_well_formed(&k) => k,
            Some(_) => return Err(CpError::BadInput(
                "the first API key must look like mr_sk_ followed by at least 32 letters or digits"
                    .into(),
            )),
            None => auth::generate_key(),
        };
        let email = email(email_raw)?;
        let password = auth::random_secret_hex()[..20].to_owned();
        let user = self
            .create_user(&email, password.clone())
            .await?
            .ok_or_else(|| CpError::Conflict("the first user exists already".into()))?;
        sqlx::query("UPDATE users SET must_change_password = 1, operator = 1 WHERE id = $1")
            .bind(user.to_string())
            .execute(&self.store.pool)
            .await?;
        let account = self.open_account(user, &email, "default".into()).await?;
        let key = self
            .issue_key_for(account, Some(user), "first key".into(), key, false)
            .await?;
        let admin_key = self
            .issue_key_for(
                account,
                Some(user),
                "operator admin key".into(),
                super::admin_key(),
                true,
            )
            .await?;
        Ok(Some(FirstAccount {
            email,
            password,
            key,
            admin_key,
        }))
    }
}

/// For an operator (`modelrouter user reset-password`): a one-time token
/// that sets `email`'s password within an hour. Only the store is needed,
/// so the command runs without the rest of the control plane.
pub async fn create_password_reset(
    store: &store::Store,
    email_raw: &str,
) -> Result<String, CpError> {
    let email = email(email_raw)?;
    let user: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(&store.pool)
        .await?;
    let user = user.ok_or_else(|| CpError::BadInput(format!("No user has the email {email}.")))?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    sqlx::query(
        "INSERT INTO password_resets (token_digest, user_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(sha256_hex(&token))
    .bind(user)
    .bind((Utc::now() + RESET_TTL).to_rfc3339())
    .execute(&store.pool)
    .await?;
    Ok(token)
}

/// What `modelrouter up` prints once on a fresh installation.
#[derive(Debug, Clone)]
pub struct FirstAccount {
    pub email: String,
    pub password: String,
    pub key: NewKey,
    /// The operator's admin key: the admin API, and the simulator's controls.
    pub admin_key: NewKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_wait_longer_and_longer_up_to_a_cap() {
        assert_eq!(LoginBackoff::wait(4), Duration::ZERO);
        assert_eq!(LoginBackoff::wait(5), Duration::from_secs(2));
        assert_eq!(LoginBackoff::wait(6), Duration::from_secs(4));
        assert_eq!(LoginBackoff::wait(40), MAX_WAIT);
        let backoff = LoginBackoff::default();
        for _ in 0..5 {
            backoff.check("a@b.c").unwrap();
            backoff.failed("a@b.c");
        }
        assert!(matches!(
            backoff.check("a@b.c"),
            Err(CpError::RateLimited(1..=2))
        ));
        backoff.check("other@b.c").unwrap();
        backoff.succeeded("a@b.c");
        backoff.check("a@b.c").unwrap();
    }
}
