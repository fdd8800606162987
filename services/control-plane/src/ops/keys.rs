//! API keys and admin keys: issued, revoked, and resolved to who acts.
//!
//! An admin key acts for its account with its creator's rights as they are
//! now, not as they were when it was made: a creator demoted to member (or
//! removed) cannot use an old admin key to take owner powers back.

use events::{
    AccountId, BudgetPeriod, Event, KeyBudget, KeyIssued, KeyLimits, KeyLimitsSet, KeyRevoked,
    UserId,
};
use money::Money;
use serde::Deserialize;
use sqlx::any::AnyRow;
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

    /// Replaces the limits of the account's API key `id` (owners only: a
    /// member could otherwise lift the limits an owner set); 404 if the
    /// account has no such API key.
    pub async fn set_key_limits(
        &self,
        member: &Member,
        id: &str,
        input: &KeyLimitsInput,
    ) -> Result<KeyLimits, CpError> {
        member.require_owner()?;
        let kind: Option<String> =
            sqlx::query_scalar("SELECT kind FROM api_keys WHERE account = $1 AND id = $2")
                .bind(member.account.to_string())
                .bind(id)
                .fetch_optional(&self.store.pool)
                .await?;
        if kind.as_deref() != Some("api") {
            return Err(CpError::NotFound);
        }
        let limits = input.check(&self.catalog.snapshot())?;
        self.record(Event::KeyLimitsSet(KeyLimitsSet {
            account: member.account,
            key: id.to_owned(),
            limits: limits.clone(),
            by: Some(member.user),
        }))
        .await?;
        Ok(limits)
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

/// The most requests or tokens per minute a key limit may name.
const MAX_PER_MINUTE: u64 = 100_000_000;

/// A key's limits as a form or the API gives them: text, checked by
/// [`KeyLimitsInput::check`]. Empty or absent fields restrict nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimitsInput {
    /// RFC 3339, or a date (the key stops at its start, UTC).
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub rpm: Option<serde_json::Value>,
    #[serde(default)]
    pub tpm: Option<serde_json::Value>,
    /// Tiers, `auto` or model ids: a list, or text separated by commas.
    #[serde(default)]
    pub allowed: Option<serde_json::Value>,
    /// USD the key may spend per `budget_period`.
    #[serde(default)]
    pub budget: Option<String>,
    /// `daily`, `monthly` (the default) or `lifetime`.
    #[serde(default)]
    pub budget_period: Option<String>,
    /// The form's CSRF token (the API ignores it).
    #[serde(default)]
    pub csrf: String,
}

/// A whole number per minute, from a JSON number or text; `None` when empty.
fn per_minute(
    value: &Option<serde_json::Value>,
    param: &'static str,
) -> Result<Option<u32>, CpError> {
    let text = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(other) => other.to_string(),
    };
    text.parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_PER_MINUTE).contains(n))
        .map(|n| Some(n as u32))
        .ok_or_else(|| {
            CpError::invalid(
                param,
                format!(
                    "`{param}` must be a whole number from 1 to {MAX_PER_MINUTE}, or empty for no limit; `{}` was given.",
                    crate::echo(&text)
                ),
            )
        })
}

impl KeyLimitsInput {
    /// The limits, or the first field that is wrong. `allowed` entries must
    /// be tiers, `auto` or models of `catalog`.
    pub fn check(&self, catalog: &catalog::Catalog) -> Result<KeyLimits, CpError> {
        let expires_at = match self.expires_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(crate::input::time(text, "expires_at")?),
        };
        let allowed = crate::input::list(&self.allowed, "allowed")?;
        for name in &allowed {
            let known = name == "auto"
                || catalog::Tier::parse(name).is_some()
                || catalog::EmbeddingAlias::parse(name).is_some()
                || catalog.models().iter().any(|m| &m.id == name)
                || catalog.embedding_models().iter().any(|m| &m.id == name);
            if !known {
                return Err(CpError::invalid(
                    "allowed",
                    format!(
                        "`{}` is not a tier (economy, standard, premium, auto), an embeddings alias or a model of the catalog.",
                        crate::echo(name)
                    ),
                ));
            }
        }
        let mut deduped = Vec::with_capacity(allowed.len());
        for name in allowed {
            if !deduped.contains(&name) {
                deduped.push(name);
            }
        }
        Ok(KeyLimits {
            expires_at,
            rpm: per_minute(&self.rpm, "rpm")?,
            tpm: per_minute(&self.tpm, "tpm")?,
            budget: self.budget()?,
            allowed: deduped,
        })
    }

    fn budget(&self) -> Result<Option<KeyBudget>, CpError> {
        let Some(text) = self
            .budget
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        let amount = crate::input::usd(text, "budget")?;
        if amount <= Money::ZERO {
            return Err(CpError::invalid(
                "budget",
                "`budget` must be more than zero.",
            ));
        }
        let period = match self.budget_period.as_deref().map(str::trim) {
            None | Some("") => BudgetPeriod::Monthly,
            Some(name) => BudgetPeriod::parse(name).ok_or_else(|| {
                CpError::invalid(
                    "budget_period",
                    format!(
                        "`budget_period` must be daily, monthly or lifetime; `{}` was given.",
                        crate::echo(name)
                    ),
                )
            })?,
        };
        Ok(Some(KeyBudget { amount, period }))
    }
}

/// The limits stored on an `api_keys` row (its `expires_at`, `rpm`, `tpm`,
/// `allowed`, `budget` and `budget_period` columns).
pub fn limits_of(row: &AnyRow) -> Result<KeyLimits, CpError> {
    let expires_at: Option<String> = row.try_get("expires_at")?;
    let per_minute = |column: &str| -> Result<Option<u32>, CpError> {
        Ok(row
            .try_get::<Option<i64>, _>(column)?
            .and_then(|n| u32::try_from(n).ok()))
    };
    let allowed: String = row.try_get("allowed")?;
    let budget = match (
        row.try_get::<Option<i64>, _>("budget")?,
        row.try_get::<Option<String>, _>("budget_period")?,
    ) {
        (Some(nanos), Some(period)) => BudgetPeriod::parse(&period).map(|period| KeyBudget {
            amount: Money::from_nanos(nanos),
            period,
        }),
        _ => None,
    };
    Ok(KeyLimits {
        budget,
        expires_at: expires_at.and_then(|t| t.parse().ok()),
        rpm: per_minute("rpm")?,
        tpm: per_minute("tpm")?,
        allowed: allowed.lines().map(str::to_owned).collect(),
    })
}
