//! API keys and admin keys: issued, revoked, and resolved to who acts.
//!
//! An admin key acts for its account with its creator's rights as they are
//! now, not as they were when it was made: a creator demoted to member (or
//! removed) cannot use an old admin key to take owner powers back.

use events::{AccountId, Event, KeyIssued, KeyRevoked, UserId};
use sqlx::Row;

use super::{name, Member, NewKey};
use crate::error::CpError;
use crate::ControlPlane;

impl ControlPlane {
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
            super::admin_key()
        } else {
            auth::generate_key()
        };
        self.issue_key_for(member.account, Some(member.user), key_name, key, admin)
            .await
    }

    /// Issues `key` for `account` (also used for `modelrouter up`'s first keys).
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

    /// Revokes every live key `user` created in `account` (when they leave it).
    pub(super) async fn revoke_keys_of(
        &self,
        account: AccountId,
        user: UserId,
        by: UserId,
    ) -> Result<usize, CpError> {
        let rows = sqlx::query(
            "SELECT id, digest FROM api_keys WHERE account = $1 AND created_by = $2 AND revoked_at IS NULL",
        )
        .bind(account.to_string())
        .bind(user.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        for row in &rows {
            self.record(Event::KeyRevoked(KeyRevoked {
                account,
                key: row.try_get("id")?,
                digest: row.try_get("digest")?,
                by: Some(by),
            }))
            .await?;
        }
        Ok(rows.len())
    }

    /// The account of a live API key (`mr_sk_…`), for reads a key may make
    /// of its own account (`/api/v1/credits`).
    pub async fn api_key_account(&self, key: &str) -> Result<Option<AccountId>, CpError> {
        if !auth::is_well_formed(key) {
            return Ok(None);
        }
        let account: Option<String> = sqlx::query_scalar(
            "SELECT account FROM api_keys WHERE digest = $1 AND kind = 'api' AND revoked_at IS NULL",
        )
        .bind(self.keys.digest_hex(key))
        .fetch_optional(&self.store.pool)
        .await?;
        Ok(account.and_then(|a| a.parse().ok()))
    }

    /// Who an admin key acts as: its creator, with the role they hold in
    /// the key's account now. `None` for an unknown or revoked key, one
    /// whose creator is no longer a member, or one made before creators
    /// were recorded.
    pub async fn admin_key_member(&self, key: &str) -> Result<Option<Member>, CpError> {
        let digest = self.keys.digest_hex(key);
        let row = sqlx::query(
            "SELECT account, created_by FROM api_keys
             WHERE digest = $1 AND kind = 'admin' AND revoked_at IS NULL",
        )
        .bind(digest)
        .fetch_optional(&self.store.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let parse = |e: uuid::Error| CpError::Internal(e.to_string());
        let account: AccountId = row
            .try_get::<String, _>("account")?
            .parse()
            .map_err(parse)?;
        let Some(creator) = row.try_get::<Option<String>, _>("created_by")? else {
            return Ok(None);
        };
        let creator = UserId(creator.parse().map_err(parse)?);
        Ok(self.member(creator, account).await?.map(|mut member| {
            member.via_admin_key = true;
            member
        }))
    }
}
