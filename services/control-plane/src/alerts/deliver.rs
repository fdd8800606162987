//! Sends fired alerts: each delivery row is tried until it is delivered,
//! with backoff (2, 4, 8 … seconds, at most 5 minutes apart) for up to
//! [`MAX_ATTEMPTS`] attempts, then marked failed with the last error. Rows
//! live in the store, so a restart resumes them; a delivery interrupted
//! mid-send is sent again, so receivers should dedupe by the alert's `id`.
//!
//! Webhooks are POSTed as JSON with `Model-Router-Signature: t=<unix
//! seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the webhook secret>`
//! (Stripe's scheme); any 2xx is delivered. Email goes through the SMTP
//! server of `control_plane.smtp_url`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use sha2::Sha256;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::rules_on;
use crate::error::CpError;
use crate::ControlPlane;

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 8;
/// The longest the deliverer sleeps with nothing due: a delivery another
/// process committed (a replica of the control plane, a restarted one) is
/// found within this; one raised here wakes it at once.
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where alert email goes out.
pub struct Mail {
    /// `smtp://host:25`, `smtp://user:pass@host:587?tls=required`,
    /// `smtps://host:465` (lettre's URL form); `None`: no email.
    pub smtp_url: Option<String>,
    /// The `From` of alert email.
    pub from: String,
}

/// The header carrying a webhook's signature.
pub const SIGNATURE_HEADER: &str = "model-router-signature";

/// `t=…,v1=…` for `body` signed at `t` under `secret`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends due deliveries until the process ends.
pub async fn run(cp: Arc<ControlPlane>) {
    let http = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let raised = Arc::clone(cp.projector.alerts_raised());
    loop {
        let wait = match step(&cp, &http).await {
            Ok(0) => until_next_due(&cp).await,
            Ok(_) => Ok(Duration::ZERO),
            Err(e) => Err(e),
        };
        let wait = wait.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "alert deliveries not sent; trying again");
            Duration::from_secs(1)
        });
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = raised.notified() => {}
            }
        }
    }
}

/// How long until the next pending delivery is due, at most
/// [`IDLE_RECHECK`] (so an idle deployment wakes for alerts every few
/// seconds, not four times a second).
async fn until_next_due(cp: &ControlPlane) -> Result<Duration, CpError> {
    let next: Option<String> =
        sqlx::query_scalar("SELECT MIN(next_at) FROM alert_deliveries WHERE state = 'pending'")
            .fetch_one(&cp.store.pool)
            .await?;
    let next = next.map(|text| parse_time(&text)).transpose()?;
    Ok(wait_for(next, Utc::now()))
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, CpError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| CpError::Internal(format!("alert_deliveries.next_at `{text}`: {e}")))
}

/// The sleep before the delivery due at `next` (none pending: the idle
/// recheck). One due already was not taken by the step just run (another
/// process holds it, or clocks differ): look again shortly, never spin.
fn wait_for(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    let Some(next) = next else {
        return IDLE_RECHECK;
    };
    (next - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .clamp(Duration::from_millis(50), IDLE_RECHECK)
}

/// Sends the deliveries due now; how many it tried.
pub async fn step(cp: &ControlPlane, http: &reqwest::Client) -> Result<usize, CpError> {
    let now = Utc::now();
    let due = sqlx::query(
        "SELECT d.alert, d.channel, d.target, d.attempts, a.account, a.kind, a.message, a.at
         FROM alert_deliveries d JOIN alerts a ON a.id = d.alert
         WHERE d.state = 'pending' AND d.next_at <= $1 ORDER BY d.next_at LIMIT 20",
    )
    .bind(now.to_rfc3339())
    .fetch_all(&cp.store.pool)
    .await?;
    // Sent side by side: one slow webhook does not hold the others back.
    let results =
        futures_util::future::join_all(due.iter().map(|row| attempt(cp, http, row))).await;
    for result in results {
        result?;
    }
    Ok(due.len())
}

/// Sends one due delivery and records how it went.
async fn attempt(cp: &ControlPlane, http: &reqwest::Client, row: &AnyRow) -> Result<(), CpError> {
    let now = Utc::now();
    let alert: String = row.try_get("alert")?;
    let channel: String = row.try_get("channel")?;
    let target: String = row.try_get("target")?;
    let attempts: i64 = row.try_get::<i64, _>("attempts")? + 1;
    let account: String = row.try_get("account")?;
    let body = json!({
        "id": alert,
        "type": row.try_get::<String, _>("kind")?,
        "account": account,
        "message": row.try_get::<String, _>("message")?,
        "created_at": row.try_get::<String, _>("at")?,
    });
    let sent = match channel.as_str() {
        "webhook" => webhook(cp, http, &account, &target, &body).await,
        _ => email(cp, &target, &body).await,
    };
    // Without an SMTP server no retry can succeed: said once, at once.
    let hopeless = channel == "email" && cp.mail.smtp_url.is_none();
    let (state, next, error) = match sent {
        Ok(()) => ("delivered", now, String::new()),
        Err(e) if attempts >= MAX_ATTEMPTS || hopeless => ("failed", now, e),
        Err(e) => {
            let wait = (1i64 << attempts.min(8)).min(300);
            ("pending", now + chrono::Duration::seconds(wait), e)
        }
    };
    sqlx::query(
        "UPDATE alert_deliveries SET state = $4, attempts = $5, next_at = $6, last_error = $7
         WHERE alert = $1 AND channel = $2 AND target = $3",
    )
    .bind(&alert)
    .bind(&channel)
    .bind(&target)
    .bind(state)
    .bind(attempts)
    .bind(next.to_rfc3339())
    .bind(events::cap(&error, 200))
    .execute(&cp.store.pool)
    .await?;
    Ok(())
}

async fn webhook(
    cp: &ControlPlane,
    http: &reqwest::Client,
    account: &str,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let account = account.parse().map_err(|_| "unknown account".to_owned())?;
    let mut conn = cp.store.pool.acquire().await.map_err(|e| e.to_string())?;
    let secret = rules_on(&mut conn, account)
        .await
        .map_err(|e| e.to_string())?
        .map(|r| r.webhook_secret)
        .unwrap_or_default();
    drop(conn);
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(&secret, Utc::now().timestamp(), &bytes),
        )
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("not delivered: {}", e.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "the webhook answered {}",
            response.status().as_u16()
        ))
    }
}

async fn email(cp: &ControlPlane, to: &str, body: &serde_json::Value) -> Result<(), String> {
    let Some(url) = cp.mail.smtp_url.as_deref().filter(|u| !u.is_empty()) else {
        return Err("no SMTP server is configured (control_plane.smtp_url)".into());
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| format!("control_plane.smtp_url: {e}"))?
        .timeout(Some(ATTEMPT_TIMEOUT))
        .build();
    let message = Message::builder()
        .from(
            cp.mail
                .from
                .parse()
                .map_err(|e| format!("control_plane.alert_from: {e}"))?,
        )
        .to(to.parse().map_err(|e| format!("{e}"))?)
        .subject(format!(
            "Model Router alert: {}",
            body["type"].as_str().unwrap_or("alert")
        ))
        .body(format!(
            "{}\n\nAlert {} for account {} at {} (UTC).\n",
            body["message"].as_str().unwrap_or_default(),
            body["id"].as_str().unwrap_or_default(),
            body["account"].as_str().unwrap_or_default(),
            body["created_at"].as_str().unwrap_or_default(),
        ))
        .map_err(|e| e.to_string())?;
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("the SMTP server refused: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle, the deliverer sleeps until the next retry is due or the idle
    /// recheck, whichever is first; an overdue one is looked at again
    /// soon, and a sleep never spins (0) nor oversleeps the recheck.
    #[test]
    fn the_deliverer_sleeps_until_the_next_delivery_is_due() {
        let now = Utc::now();
        let secs = chrono::Duration::seconds;
        assert_eq!(wait_for(None, now), IDLE_RECHECK);
        assert_eq!(wait_for(Some(now + secs(2)), now), Duration::from_secs(2));
        assert_eq!(wait_for(Some(now + secs(300)), now), IDLE_RECHECK);
        assert_eq!(
            wait_for(Some(now - secs(3)), now),
            Duration::from_millis(50)
        );
        assert_eq!(wait_for(Some(now), now), Duration::from_millis(50));
    }

    #[test]
    fn signatures_follow_the_documented_scheme() {
        // HMAC-SHA256 of "1700000000.{}" under "k", computed with Python's hmac.
        assert_eq!(
            super::signature("k", 1_700_000_000, b"{}"),
            "t=1700000000,v1=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
        );
    }
}
