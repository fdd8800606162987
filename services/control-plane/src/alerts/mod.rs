//! Alerts: an account's owners choose what they are told about (the daily
//! limit or a key's budget crossing a percentage, the balance falling below
//! an amount, an auto-recharge declined) and where (a signed webhook, email
//! when an SMTP server is configured). [`watch`] evaluates every account
//! state the ledger publishes, the projector fires on declined recharges,
//! and [`deliver`] sends, retrying until delivered or given up.
//!
//! An alert fires once per crossing: its `dedupe` name (for example
//! `daily:2026-12-04:80`) is unique per account, so the same crossing seen
//! again, or by a second control-plane replica, fires nothing more.

pub mod deliver;
pub mod watch;

use chrono::Utc;
use events::{AccountId, AlertRules, AlertRulesSet, Event};
use money::Money;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::error::CpError;
use crate::ops::Member;
use crate::ControlPlane;

/// The most percentages one rule may list.
const MAX_PERCENTS: usize = 10;
/// The most email addresses alerts go to.
const MAX_EMAILS: usize = 10;

/// Alert rules as a form or the API gives them, checked by [`AlertRulesInput::check`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRulesInput {
    /// Percentages, as a list or text separated by commas (`50, 80, 100`).
    #[serde(default)]
    pub daily_limit_percents: Option<serde_json::Value>,
    #[serde(default)]
    pub key_budget_percents: Option<serde_json::Value>,
    /// USD; empty for none.
    #[serde(default)]
    pub balance_below: Option<String>,
    /// `true`, or a checked checkbox (`on`).
    #[serde(default)]
    pub recharge_failed: Option<serde_json::Value>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Addresses, as a list or text separated by commas.
    #[serde(default)]
    pub emails: Option<serde_json::Value>,
    /// The form's CSRF token (the API ignores it).
    #[serde(default)]
    pub csrf: String,
}

fn percents(value: &Option<serde_json::Value>, param: &'static str) -> Result<Vec<u8>, CpError> {
    let mut out = Vec::new();
    for item in crate::input::list(value, param)? {
        let p = item
            .trim_end_matches('%')
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| {
                CpError::invalid(
                    param,
                    format!(
                        "`{param}` lists whole percentages from 1 to 100; `{}` was given.",
                        crate::echo(&item)
                    ),
                )
            })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.len() > MAX_PERCENTS {
        return Err(CpError::invalid(
            param,
            format!("`{param}` lists at most {MAX_PERCENTS} percentages."),
        ));
    }
    out.sort_unstable();
    Ok(out)
}

impl AlertRulesInput {
    /// The rules, or the first field that is wrong. `secret` is the
    /// webhook's signing key kept from before (a new one is made for a
    /// first webhook).
    pub fn check(&self, secret: &str) -> Result<AlertRules, CpError> {
        let balance_below = match self.balance_below.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                let floor = crate::input::usd(text, "balance_below")?;
                if floor < Money::ZERO {
                    return Err(CpError::invalid(
                        "balance_below",
                        "`balance_below` cannot be negative.",
                    ));
                }
                Some(floor)
            }
        };
        let recharge_failed = match &self.recharge_failed {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => matches!(s.as_str(), "on" | "true"),
            Some(_) => {
                return Err(CpError::invalid(
                    "recharge_failed",
                    "`recharge_failed` must be true or false.",
                ))
            }
        };
        let webhook_url = match self.webhook_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                exporter::destination::check_endpoint(url).map_err(|e| {
                    CpError::invalid(
                        "webhook_url",
                        e.message.replace("endpoint URL", "webhook URL"),
                    )
                })?;
                Some(url.to_owned())
            }
        };
        let emails = crate::input::list(&self.emails, "emails")?;
        if emails.len() > MAX_EMAILS {
            return Err(CpError::invalid(
                "emails",
                format!("Alerts go to at most {MAX_EMAILS} addresses."),
            ));
        }
        for email in &emails {
            if email.parse::<lettre::Address>().is_err() {
                return Err(CpError::invalid(
                    "emails",
                    format!("`{}` is not an email address.", crate::echo(email)),
                ));
            }
        }
        let webhook_secret = match (&webhook_url, secret) {
            (None, _) => String::new(),
            (Some(_), "") => format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>())),
            (Some(_), kept) => kept.to_owned(),
        };
        Ok(AlertRules {
            daily_limit_percents: percents(&self.daily_limit_percents, "daily_limit_percents")?,
            key_budget_percents: percents(&self.key_budget_percents, "key_budget_percents")?,
            balance_below,
            recharge_failed,
            webhook_url,
            webhook_secret,
            emails,
        })
    }
}

/// An alert as listed, with how its deliveries went.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: String,
    pub kind: String,
    pub message: String,
    pub at: String,
    /// `channel target: state` per delivery (`webhook https://…: delivered`).
    pub deliveries: Vec<String>,
}

/// A new alert to fire.
pub struct Alert<'a> {
    pub account: AccountId,
    /// Unique per account and crossing.
    pub dedupe: String,
    /// `daily_limit`, `key_budget`, `balance_low` or `recharge_failed`.
    pub kind: &'static str,
    pub message: String,
    pub rules: &'a AlertRules,
}

/// Records `alert` and its deliveries on `conn`, unless it fired before;
/// whether it is new.
pub async fn fire(conn: &mut sqlx::AnyConnection, alert: Alert<'_>) -> Result<bool, CpError> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = Utc::now().to_rfc3339();
    let fresh = sqlx::query(
        "INSERT INTO alerts (id, account, dedupe, kind, message, at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account, dedupe) DO NOTHING",
    )
    .bind(&id)
    .bind(alert.account.to_string())
    .bind(&alert.dedupe)
    .bind(alert.kind)
    .bind(&alert.message)
    .bind(&now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        return Ok(false);
    }
    let mut targets: Vec<(&str, &str)> = Vec::new();
    if let Some(url) = &alert.rules.webhook_url {
        targets.push(("webhook", url));
    }
    // Without an SMTP server the deliverer marks these failed, saying so.
    targets.extend(alert.rules.emails.iter().map(|e| ("email", e.as_str())));
    for (channel, target) in targets {
        sqlx::query(
            "INSERT INTO alert_deliveries (alert, channel, target, state, attempts, next_at, last_error)
             VALUES ($1, $2, $3, 'pending', 0, $4, '')",
        )
        .bind(&id)
        .bind(channel)
        .bind(target)
        .bind(&now)
        .execute(&mut *conn)
        .await?;
    }
    tracing::info!(account = %alert.account, kind = alert.kind, dedupe = %alert.dedupe, "alert fired");
    Ok(true)
}

/// The rules stored for `account` (the default when none).
pub async fn rules_on(
    conn: &mut sqlx::AnyConnection,
    account: AccountId,
) -> Result<Option<AlertRules>, CpError> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT rules FROM alert_rules WHERE account = $1")
            .bind(account.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

impl ControlPlane {
    /// The account's alert rules (owners see the webhook secret).
    pub async fn alert_rules(&self, member: &Member) -> Result<AlertRules, CpError> {
        let mut conn = self.store.pool.acquire().await?;
        let mut rules = rules_on(&mut conn, member.account)
            .await?
            .unwrap_or_default();
        if member.require_owner().is_err() {
            rules.webhook_secret.clear();
        }
        Ok(rules)
    }

    /// Replaces the account's alert rules (owners).
    pub async fn set_alert_rules(
        &self,
        member: &Member,
        input: &AlertRulesInput,
    ) -> Result<AlertRules, CpError> {
        member.require_owner()?;
        let kept = self.alert_rules(member).await?.webhook_secret;
        let rules = input.check(&kept)?;
        self.record(Event::AlertRulesSet(AlertRulesSet {
            account: member.account,
            rules: rules.clone(),
            by: Some(member.user),
        }))
        .await?;
        Ok(rules)
    }

    /// The account's latest alerts, newest first.
    pub async fn alerts_of(
        &self,
        account: AccountId,
        limit: i64,
    ) -> Result<Vec<AlertRow>, CpError> {
        let rows = sqlx::query(
            "SELECT id, kind, message, at FROM alerts WHERE account = $1 ORDER BY at DESC, id LIMIT $2",
        )
        .bind(account.to_string())
        .bind(limit)
        .fetch_all(&self.store.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let deliveries = sqlx::query(
                "SELECT channel, target, state, last_error FROM alert_deliveries WHERE alert = $1 ORDER BY channel, target",
            )
            .bind(&id)
            .fetch_all(&self.store.pool)
            .await?
            .iter()
            .map(|d| {
                let error: String = d.try_get("last_error")?;
                Ok(format!(
                    "{} {}: {}{}",
                    d.try_get::<String, _>("channel")?,
                    d.try_get::<String, _>("target")?,
                    d.try_get::<String, _>("state")?,
                    if error.is_empty() { String::new() } else { format!(" ({error})") }
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
            out.push(AlertRow {
                id,
                kind: row.try_get("kind")?,
                message: row.try_get("message")?,
                at: crate::queries::short_time(&row.try_get::<String, _>("at")?),
                deliveries,
            });
        }
        Ok(out)
    }
}
