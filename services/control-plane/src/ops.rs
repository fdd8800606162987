//! The operations the dashboard and the JSON API share. Each check happens
//! here, once; each change is an event appended to the log and then
//! applied to the projection.

use chrono::Utc;
use events::{
    AccountId, AccountOpened, CreditsGranted, DailyLimitSet, Envelope, Event, KeyIssued,
    KeyRevoked, MemberInvited, MemberJoined, MemberRoleSet, ProviderBlock, Role, UserId,
};
use money::Money;
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::error::CpError;
use crate::ControlPlane;

/// A logged-in member, working in one account.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: UserId,
    pub email: String,
    pub account: AccountId,
    pub account_name: String,
    pub role: Role,
    /// The user's session epoch (see `session`).
    pub session_epoch: i64,
}

impl Member {
    /// Only owners may go on.
    pub fn require_owner(&self) -> Result<(), CpError> {
        match self.role {
            Role::Owner => Ok(()),
            Role::Member => Err(CpError::Forbidden(
                "Only the account's owners can do this.".into(),
            )),
        }
    }
}

/// A key just created: the plaintext, shown once.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub name: String,
    pub key: String,
    pub admin: bool,
}

/// Normalises and checks an email address.
pub fn email(raw: &str) -> Result<String, CpError> {
    let email = raw.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(CpError::BadInput(format!(
            "`{}` is not an email address.",
            raw.trim()
        )))
    }
}

/// Checks a display name (account or key name).
pub fn name(raw: &str, what: &str) -> Result<String, CpError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(CpError::BadInput(format!(
            "The {what} must be 1 to 80 characters."
        )));
    }
    Ok(name.to_owned())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl ControlPlane {
    /// Appends `event` to the log, then applies it here.
    pub async fn record(&self, event: Event) -> Result<Envelope, CpError> {
        self.record_as(Envelope::new(event)).await
    }

    async fn record_as(&self, envelope: Envelope) -> Result<Envelope, CpError> {
        self.log
            .append(
                envelope.event.subject(),
                &envelope.id.to_string(),
                &envelope.encode(),
            )
            .await?;
        self.projector.apply(&envelope).await?;
        Ok(envelope)
    }

    /// Creates a user with `password` (rules checked, argon2id-hashed).
    async fn create_user(&self, email: &str, password: String) -> Result<UserId, CpError> {
        crate::passwords::check_rules(&password, email)?;
        let taken: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.store.pool)
            .await?;
        if taken.is_some() {
            return Err(CpError::Conflict(
                "A user with this email already exists. Log in instead.".into(),
            ));
        }
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
        if inserted.rows_affected() == 0 {
            return Err(CpError::Conflict(
                "A user with this email already exists. Log in instead.".into(),
            ));
        }
        Ok(user)
    }

    /// A new user owning a new account (with demo credits when configured).
    pub async fn sign_up(
        &self,
        email_raw: &str,
        password: String,
        account_name: &str,
    ) -> Result<(UserId, AccountId), CpError> {
        let email = email(email_raw)?;
        let account_name = name(account_name, "account name")?;
        let user = self.create_user(&email, password).await?;
        let account = AccountId::new();
        self.record(Event::AccountOpened(AccountOpened {
            account,
            name: account_name,
        }))
        .await?;
        self.record(Event::MemberJoined(MemberJoined {
            account,
            user,
            email,
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
        Ok((user, account))
    }

    /// The user and account for a correct email and password.
    pub async fn log_in(
        &self,
        email_raw: &str,
        password: String,
    ) -> Result<(UserId, AccountId), CpError> {
        let wrong = || CpError::BadInput("The email or password is not right.".into());
        let email = email(email_raw).map_err(|_| wrong())?;
        let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&self.store.pool)
            .await?;
        let (id, stored) = match row {
            Some(r) => (
                Some(r.try_get::<String, _>("id")?),
                Some(r.try_get::<String, _>("password_hash")?),
            ),
            None => (None, None),
        };
        if !self.passwords.verify(password, stored).await {
            return Err(wrong());
        }
        let user = id
            .and_then(|id| id.parse().ok())
            .map(UserId)
            .ok_or_else(wrong)?;
        let account: Option<String> = sqlx::query_scalar(
            "SELECT account FROM members WHERE user_id = $1 ORDER BY joined_at LIMIT 1",
        )
        .bind(user.to_string())
        .fetch_optional(&self.store.pool)
        .await?;
        let account = account.and_then(|a| a.parse().ok()).ok_or_else(|| {
            CpError::Forbidden("This user is not a member of any account.".into())
        })?;
        Ok((user, account))
    }

    /// `user` as a member of `account`, if they are one.
    pub async fn member(
        &self,
        user: UserId,
        account: AccountId,
    ) -> Result<Option<Member>, CpError> {
        let row = sqlx::query(
            "SELECT m.email, m.role, a.name, u.session_epoch FROM members m
             JOIN accounts a ON a.id = m.account JOIN users u ON u.id = m.user_id
             WHERE m.account = $1 AND m.user_id = $2",
        )
        .bind(account.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.store.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        Ok(Some(Member {
            user,
            email: row.try_get("email")?,
            account,
            account_name: row.try_get("name")?,
            role: role.parse().map_err(CpError::Internal)?,
            session_epoch: row.try_get("session_epoch")?,
        }))
    }

    /// Creates an API key (or, for owners, an admin-API key) named `name`.
    pub async fn issue_key(
        &self,
        member: &Member,
        key_name: &str,
        admin: bool,
    ) -> Result<NewKey, CpError> {
        if admin {
            member.require_owner()?;
        }
        let key_name = name(key_name, "key name")?;
        let key = if admin {
            auth::generate_key().replacen(auth::KEY_PREFIX, crate::ADMIN_KEY_PREFIX, 1)
        } else {
            auth::generate_key()
        };
        self.issue_key_for(member.account, Some(member.user), key_name, key, admin)
            .await
    }

    /// Issues `key` for `account` (also used for `modelrouter up`'s first key).
    pub async fn issue_key_for(
        &self,
        account: AccountId,
        by: Option<UserId>,
        key_name: String,
        key: String,
        admin: bool,
    ) -> Result<NewKey, CpError> {
        let digest = self.keys.digest_hex(&key);
        let (prefix, last_four) = auth::display_parts(&key);
        let id = auth::key_id(&digest);
        self.record(Event::KeyIssued(KeyIssued {
            account,
            key: id.clone(),
            digest,
            name: key_name.clone(),
            prefix,
            last_four,
            by,
            admin,
        }))
        .await?;
        Ok(NewKey {
            id,
            name: key_name,
            key,
            admin,
        })
    }

    /// Revokes the account's key `id`; 404 if the account has no such key.
    pub async fn revoke_key(&self, member: &Member, id: &str) -> Result<(), CpError> {
        let row = sqlx::query(
            "SELECT digest, kind, revoked_at FROM api_keys WHERE account = $1 AND id = $2",
        )
        .bind(member.account.to_string())
        .bind(id)
        .fetch_optional(&self.store.pool)
        .await?
        .ok_or(CpError::NotFound)?;
        if row.try_get::<String, _>("kind")? == "admin" {
            member.require_owner()?;
        }
        if row.try_get::<Option<String>, _>("revoked_at")?.is_some() {
            return Ok(());
        }
        self.record(Event::KeyRevoked(KeyRevoked {
            account: member.account,
            key: id.to_owned(),
            digest: row.try_get("digest")?,
            by: Some(member.user),
        }))
        .await?;
        Ok(())
    }

    /// Blocks or unblocks `provider` for the member's account.
    pub async fn set_block(
        &self,
        member: &Member,
        provider: &str,
        blocked: bool,
    ) -> Result<(), CpError> {
        let provider: catalog::ProviderId = provider
            .parse()
            .map_err(|_| CpError::BadInput(format!("`{provider}` is not a provider. Use one of: openai, anthropic, google, xai, bedrock, groq, cerebras.")))?;
        let body = ProviderBlock {
            account: member.account,
            provider: provider.to_string(),
            by: Some(member.user),
        };
        self.record(if blocked {
            Event::ProviderBlocked(body)
        } else {
            Event::ProviderUnblocked(body)
        })
        .await?;
        Ok(())
    }

    /// Sets (or, with `None`, lifts) the daily spend limit.
    pub async fn set_limit(&self, member: &Member, limit: Option<Money>) -> Result<(), CpError> {
        if limit.is_some_and(|l| l < Money::ZERO) {
            return Err(CpError::BadInput(
                "The daily limit cannot be negative.".into(),
            ));
        }
        self.record(Event::DailyLimitSet(DailyLimitSet {
            account: member.account,
            limit,
        }))
        .await?;
        Ok(())
    }

    /// Invites `email` as `role`; returns the link's token (shown once).
    pub async fn invite(
        &self,
        owner: &Member,
        email_raw: &str,
        role: Role,
    ) -> Result<String, CpError> {
        owner.require_owner()?;
        let email = email(email_raw)?;
        let token = hex::encode(rand::random::<[u8; 32]>());
        self.record(Event::MemberInvited(MemberInvited {
            account: owner.account,
            invitation: Uuid::new_v4(),
            email,
            role,
            by: owner.user,
            token_digest: sha256_hex(&token),
        }))
        .await?;
        Ok(token)
    }

    /// The open invitation of `token`: (id, account, account name, email, role).
    pub async fn invitation(
        &self,
        token: &str,
    ) -> Result<(Uuid, AccountId, String, String, Role), CpError> {
        let row = sqlx::query(
            "SELECT i.id, i.account, i.email, i.role, a.name FROM invitations i
             JOIN accounts a ON a.id = i.account
             WHERE i.token_digest = $1 AND i.accepted_by IS NULL",
        )
        .bind(sha256_hex(token))
        .fetch_optional(&self.store.pool)
        .await?
        .ok_or(CpError::NotFound)?;
        let parse = |e: String| CpError::Internal(e);
        Ok((
            row.try_get::<String, _>("id")?
                .parse()
                .map_err(|e: uuid::Error| parse(e.to_string()))?,
            row.try_get::<String, _>("account")?
                .parse()
                .map_err(|e: uuid::Error| parse(e.to_string()))?,
            row.try_get("name")?,
            row.try_get("email")?,
            row.try_get::<String, _>("role")?.parse().map_err(parse)?,
        ))
    }

    /// Accepts the invitation `token` as `user` (whose email it must be).
    pub async fn accept(
        &self,
        token: &str,
        user: UserId,
        user_email: &str,
    ) -> Result<AccountId, CpError> {
        let (invitation, account, _, invited, role) = self.invitation(token).await?;
        if invited != user_email {
            return Err(CpError::Forbidden(format!(
                "This invitation is for {invited}; log in as that user to accept it."
            )));
        }
        self.record(Event::MemberJoined(MemberJoined {
            account,
            user,
            email: invited,
            role,
            invitation: Some(invitation),
        }))
        .await?;
        Ok(account)
    }

    /// Signs up a new user through an invitation (no account of their own).
    pub async fn join(
        &self,
        token: &str,
        password: String,
    ) -> Result<(UserId, AccountId), CpError> {
        let (_, _, _, invited, _) = self.invitation(token).await?;
        let user = self.create_user(&invited, password).await?;
        let account = self.accept(token, user, &invited).await?;
        Ok((user, account))
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

    /// Changes a member's role; the last owner cannot step down.
    pub async fn set_role(&self, owner: &Member, user: UserId, role: Role) -> Result<(), CpError> {
        owner.require_owner()?;
        let target = self
            .member(user, owner.account)
            .await?
            .ok_or(CpError::NotFound)?;
        if target.role == Role::Owner && role == Role::Member {
            let owners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM members WHERE account = $1 AND role = 'owner'",
            )
            .bind(owner.account.to_string())
            .fetch_one(&self.store.pool)
            .await?;
            if owners <= 1 {
                return Err(CpError::Conflict(
                    "An account needs at least one owner; make someone else owner first.".into(),
                ));
            }
        }
        self.record(Event::MemberRoleSet(MemberRoleSet {
            account: owner.account,
            user,
            role,
            by: owner.user,
        }))
        .await?;
        Ok(())
    }

    /// The account an admin key acts for, with an owner's rights; `None` for
    /// an unknown or revoked key.
    pub async fn admin_key_member(&self, key: &str) -> Result<Option<Member>, CpError> {
        let digest = self.keys.digest_hex(key);
        let row = sqlx::query(
            "SELECT k.account, a.name FROM api_keys k JOIN accounts a ON a.id = k.account
             WHERE k.digest = $1 AND k.kind = 'admin' AND k.revoked_at IS NULL",
        )
        .bind(digest)
        .fetch_optional(&self.store.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let account: AccountId = row
            .try_get::<String, _>("account")?
            .parse()
            .map_err(|e: uuid::Error| CpError::Internal(e.to_string()))?;
        Ok(Some(Member {
            user: UserId(Uuid::nil()),
            email: "admin key".into(),
            account,
            account_name: row.try_get("name")?,
            role: Role::Owner,
            session_epoch: 0,
        }))
    }

    /// On a fresh installation, the first account: a user with a random
    /// password owning an account and its first API key (`key`, or a new
    /// one), returned to be printed once. `None` when a user exists already.
    pub async fn first_account(
        &self,
        email_raw: &str,
        key: Option<String>,
    ) -> Result<Option<(String, String, NewKey)>, CpError> {
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
        let password = auth::random_secret_hex()[..20].to_owned();
        let (user, account) = self.sign_up(email_raw, password.clone(), "default").await?;
        let key = self
            .issue_key_for(account, Some(user), "first key".into(), key, false)
            .await?;
        Ok(Some((email(email_raw)?, password, key)))
    }
}
