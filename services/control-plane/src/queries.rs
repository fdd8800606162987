//! Reads for pages and the API, every one scoped to the caller's account.

use chrono::{Duration, NaiveDate, Utc};
use events::AccountId;
use money::Money;
use serde::Serialize;
use sqlx::Row;

use crate::chart::Day;
use crate::error::CpError;
use crate::ControlPlane;

/// An API key as listed (never the key itself).
#[derive(Debug, Serialize)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub last_four: String,
    pub kind: String,
    pub created_at: String,
    /// The email of the member who created it (empty when unknown or gone).
    pub created_by: String,
    pub last_used: Option<String>,
    pub revoked: bool,
    /// Its own limits (API keys).
    pub limits: events::KeyLimits,
    /// What requests made with it cost, ever and today (UTC).
    pub spent: Money,
    pub spent_today: Money,
}

impl KeyRow {
    /// The key's limits in a few words, `none` when it has none.
    pub fn limits_text(&self) -> String {
        let l = &self.limits;
        let mut parts = Vec::new();
        if let Some(at) = l.expires_at {
            parts.push(format!("expires {}", at.format("%Y-%m-%d %H:%M")));
        }
        if let Some(b) = l.budget {
            parts.push(format!("${} {}", b.amount, b.period.as_str()));
        }
        if let Some(rpm) = l.rpm {
            parts.push(format!("{rpm} req/min"));
        }
        if let Some(tpm) = l.tpm {
            parts.push(format!("{tpm} tokens/min"));
        }
        if !l.allowed.is_empty() {
            parts.push(format!("only {}", l.allowed.join(", ")));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" · ")
        }
    }

    /// The form's values: (expires_at, rpm, tpm, allowed).
    pub fn limit_fields(&self) -> (String, String, String, String) {
        let l = &self.limits;
        let n = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        (
            l.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            n(l.rpm),
            n(l.tpm),
            l.allowed.join(", "),
        )
    }

    /// The budget form's values: (USD amount, period).
    pub fn budget_fields(&self) -> (String, &'static str) {
        match self.limits.budget {
            Some(b) => (b.amount.to_string(), b.period.as_str()),
            None => (String::new(), "monthly"),
        }
    }
}

/// An open invitation as listed to owners.
#[derive(Debug, Serialize)]
pub struct InvitationRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// One served request.
#[derive(Debug, Serialize)]
pub struct RequestRow {
    pub at: String,
    pub request_id: String,
    pub model: String,
    pub provider: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// USD.
    pub cost: Money,
    pub total_ms: i64,
    pub outcome: String,
}

/// A member as listed.
#[derive(Debug, Serialize)]
pub struct MemberRow {
    pub user: String,
    pub email: String,
    pub role: String,
    pub joined_at: String,
}

/// An account a user belongs to.
#[derive(Debug, Serialize)]
pub struct MembershipRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub current: bool,
}

/// The ledger's figures for an account today.
#[derive(Debug, Serialize)]
pub struct Usage {
    pub balance: Money,
    pub spent_today: Money,
    pub daily_limit: Option<Money>,
    pub requests_today: u64,
}

/// A day of usage.
#[derive(Debug, Serialize)]
pub struct DayRow {
    pub day: NaiveDate,
    pub requests: u64,
    pub spent: Money,
}

/// Shows a stored RFC 3339 time as `YYYY-MM-DD HH:MM:SS`.
pub fn short_time(at: &str) -> String {
    at.get(..19).unwrap_or(at).replace('T', " ")
}

impl ControlPlane {
    pub(crate) async fn keys_of(&self, account: AccountId) -> Result<Vec<KeyRow>, CpError> {
        let rows = sqlx::query(
            "SELECT k.id, k.name, k.prefix, k.last_four, k.kind, k.created_at, k.revoked_at,
                    k.expires_at, k.rpm, k.tpm, k.allowed, k.budget, k.budget_period,
                    COALESCE(u.email, '') AS created_by,
                    (SELECT MAX(r.at) FROM requests r WHERE r.account = k.account AND r.key_id = k.id) AS last_used,
                    (SELECT CAST(COALESCE(SUM(r.cost), 0) AS BIGINT) FROM requests r
                      WHERE r.account = k.account AND r.key_id = k.id) AS spent,
                    (SELECT CAST(COALESCE(SUM(r.cost), 0) AS BIGINT) FROM requests r
                      WHERE r.account = k.account AND r.key_id = k.id AND r.at >= $2) AS spent_today
             FROM api_keys k LEFT JOIN users u ON u.id = k.created_by
             WHERE k.account = $1 ORDER BY k.created_at DESC, k.id",
        )
        .bind(account.to_string())
        .bind(chrono::Utc::now().date_naive().to_string())
        .fetch_all(&self.store.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    prefix: r.try_get("prefix")?,
                    last_four: r.try_get("last_four")?,
                    kind: r.try_get("kind")?,
                    created_at: short_time(&r.try_get::<String, _>("created_at")?),
                    created_by: r.try_get("created_by")?,
                    last_used: r
                        .try_get::<Option<String>, _>("last_used")?
                        .map(|t| short_time(&t)),
                    revoked: r.try_get::<Option<String>, _>("revoked_at")?.is_some(),
                    limits: crate::ops::keys::limits_of(r)?,
                    spent: Money::from_nanos(r.try_get("spent")?),
                    spent_today: Money::from_nanos(r.try_get("spent_today")?),
                })
            })
            .collect()
    }

    pub(crate) async fn memberships_of(
        &self,
        user: events::UserId,
        current: AccountId,
    ) -> Result<Vec<MembershipRow>, CpError> {
        let rows = sqlx::query(
            "SELECT m.account, m.role, a.name FROM members m JOIN accounts a ON a.id = m.account
             WHERE m.user_id = $1 ORDER BY m.joined_at, a.name",
        )
        .bind(user.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("account")?;
                Ok(MembershipRow {
                    current: id == current.to_string(),
                    id,
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                })
            })
            .collect()
    }

    pub(crate) async fn blocked_of(&self, account: AccountId) -> Result<Vec<String>, CpError> {
        Ok(sqlx::query_scalar(
            "SELECT provider FROM provider_blocks WHERE account = $1 ORDER BY provider",
        )
        .bind(account.to_string())
        .fetch_all(&self.store.pool)
        .await?)
    }

    pub(crate) async fn usage_of(&self, account: AccountId) -> Result<Usage, CpError> {
        let today = Utc::now().date_naive();
        let state = ledger::projection::state(&self.store, account, today).await?;
        let requests: Option<i64> =
            sqlx::query_scalar("SELECT requests FROM day_spend WHERE account = $1 AND day = $2")
                .bind(account.to_string())
                .bind(today.to_string())
                .fetch_optional(&self.store.pool)
                .await?;
        Ok(match state {
            Some(s) => Usage {
                balance: s.balance,
                spent_today: s.spent_today,
                daily_limit: s.daily_limit,
                requests_today: requests.unwrap_or(0).max(0) as u64,
            },
            None => Usage {
                balance: Money::ZERO,
                spent_today: Money::ZERO,
                daily_limit: None,
                requests_today: 0,
            },
        })
    }

    pub(crate) async fn days_of(
        &self,
        account: AccountId,
        days: i64,
    ) -> Result<Vec<DayRow>, CpError> {
        let today = Utc::now().date_naive();
        let first = today - Duration::days(days - 1);
        let rows = sqlx::query(
            "SELECT day, spent, requests FROM day_spend WHERE account = $1 AND day >= $2 ORDER BY day",
        )
        .bind(account.to_string())
        .bind(first.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        let mut out: Vec<DayRow> = (0..days)
            .map(|i| DayRow {
                day: first + Duration::days(i),
                requests: 0,
                spent: Money::ZERO,
            })
            .collect();
        for r in rows {
            let day: NaiveDate = r
                .try_get::<String, _>("day")?
                .parse()
                .map_err(|e: chrono::ParseError| CpError::Internal(e.to_string()))?;
            if let Some(slot) = out.iter_mut().find(|d| d.day == day) {
                slot.requests = r.try_get::<i64, _>("requests")?.max(0) as u64;
                slot.spent = Money::from_nanos(r.try_get("spent")?);
            }
        }
        Ok(out)
    }

    pub(crate) async fn recent_of(
        &self,
        account: AccountId,
        limit: i64,
    ) -> Result<Vec<RequestRow>, CpError> {
        let rows = sqlx::query(
            "SELECT at, request_id, model, provider, input_tokens, output_tokens, cost, total_ms, outcome
             FROM requests WHERE account = $1 ORDER BY at DESC, event_id LIMIT $2",
        )
        .bind(account.to_string())
        .bind(limit)
        .fetch_all(&self.store.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RequestRow {
                    at: short_time(&r.try_get::<String, _>("at")?),
                    request_id: r.try_get("request_id")?,
                    model: r.try_get("model")?,
                    provider: r.try_get("provider")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cost: Money::from_nanos(r.try_get("cost")?),
                    total_ms: r.try_get("total_ms")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    pub(crate) async fn members_of(&self, account: AccountId) -> Result<Vec<MemberRow>, CpError> {
        let rows = sqlx::query(
            "SELECT user_id, email, role, joined_at FROM members WHERE account = $1 ORDER BY joined_at, email",
        )
        .bind(account.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MemberRow {
                    user: r.try_get("user_id")?,
                    email: r.try_get("email")?,
                    role: r.try_get("role")?,
                    joined_at: short_time(&r.try_get::<String, _>("joined_at")?),
                })
            })
            .collect()
    }

    pub(crate) async fn pending_invitations(
        &self,
        account: AccountId,
    ) -> Result<Vec<InvitationRow>, CpError> {
        let rows = sqlx::query(
            "SELECT id, email, role, created_at, expires_at FROM invitations
             WHERE account = $1 AND accepted_by IS NULL AND withdrawn_at IS NULL
               AND (expires_at IS NULL OR expires_at > $2)
             ORDER BY created_at",
        )
        .bind(account.to_string())
        .bind(Utc::now().to_rfc3339())
        .fetch_all(&self.store.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InvitationRow {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    role: r.try_get("role")?,
                    created_at: short_time(&r.try_get::<String, _>("created_at")?),
                    expires_at: r
                        .try_get::<Option<String>, _>("expires_at")?
                        .map(|t| short_time(&t)),
                })
            })
            .collect()
    }
}

/// Chart days from usage days.
pub fn chart_days(days: &[DayRow]) -> Vec<Day> {
    days.iter()
        .map(|d| Day {
            label: d.day.format("%m-%d").to_string(),
            requests: d.requests,
            spent_nanos: d.spent.nanos(),
        })
        .collect()
}
