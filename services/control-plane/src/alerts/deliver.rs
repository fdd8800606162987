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

use chrono::Utc;
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
    loop {
        match step(&cp, &http).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "alert deliveries not sent; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
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
    #[test]
    fn signatures_follow_the_documented_scheme() {
        // HMAC-SHA256 of "1700000000.{}" under "k", computed with Python's hmac.
        assert_eq!(
            super::signature("k", 1_700_000_000, b"{}"),
            "t=1700000000,v1=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
        );
    }
}
