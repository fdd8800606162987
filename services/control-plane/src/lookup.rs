//! `GET /v1/requests/{request_id}`: what the ledger recorded for one
//! request, looked up by the `X-Request-Id` the gateway answered with, for
//! the account of the API key that asks (`Authorization: Bearer mr_sk_…`).
//!
//! The ledger's `requests` row finds the usage event (and the log record it
//! came in); the event itself carries everything: model, provider, tier,
//! `auto`'s score, tokens, cost, every attempt and the timings. The control
//! plane serves it because it holds the store; a deployment's balancer sends
//! `/v1/requests/` here (see `deploy/`). Errors use the OpenAI envelope.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use events::{Envelope, Event};
use serde_json::{json, Value};
use sqlx::Row;

use crate::error::{ApiError, CpError};
use crate::extract::ApiKeyAccount;
use crate::ControlPlane;

/// Request ids the gateway issues are far shorter; longer ones cannot exist.
const MAX_REQUEST_ID: usize = 128;

/// The route.
pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route("/v1/requests/{request_id}", get(lookup))
}

async fn lookup(
    State(cp): State<Arc<ControlPlane>>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(recorded(&cp, account, &request_id).await?))
}

/// What the ledger recorded for `request_id` of `account`: its usage event
/// with `object` and `recorded_at` added (the request log's detail view).
pub(crate) async fn recorded(
    cp: &ControlPlane,
    account: events::AccountId,
    request_id: &str,
) -> Result<Value, CpError> {
    if request_id.len() > MAX_REQUEST_ID {
        return Err(CpError::Missing("No such request id.".into()));
    }
    let row = sqlx::query(
        // `seq` is 0 on a row a ledger older than migration 0014 wrote
        // after it ran (a rolling upgrade): its position is then in the
        // claim row that ledger also wrote.
        "SELECT r.event_id, r.at, COALESCE(NULLIF(r.seq, 0), e.seq, 0) AS seq FROM requests r
         LEFT JOIN applied_events e ON e.event_id = r.event_id
         WHERE r.account = $1 AND r.request_id = $2
         ORDER BY r.at DESC LIMIT 1",
    )
    .bind(account.to_string())
    .bind(request_id)
    .fetch_optional(&cp.store.pool)
    .await?;
    let Some(row) = row else {
        return Err(CpError::Missing(format!(
            "No request `{request_id}` is recorded for this account (a request reaches the ledger a moment after its answer)."
        )));
    };
    let event_id: String = row.try_get("event_id")?;
    let recorded_at: String = row.try_get("at")?;
    let seq: i64 = row.try_get("seq")?;
    let usage = usage_event(cp, seq as u64, &event_id).await?;
    let mut body =
        serde_json::to_value(&usage).map_err(|e| CpError::Internal(format!("usage event: {e}")))?;
    if let Value::Object(fields) = &mut body {
        fields.insert("object".into(), json!("router.request"));
        fields.insert("recorded_at".into(), json!(recorded_at));
    }
    Ok(body)
}

/// The usage event `event_id` in the log record at `seq` (a record may
/// carry several events).
async fn usage_event(
    cp: &ControlPlane,
    seq: u64,
    event_id: &str,
) -> Result<Box<events::UsageRecorded>, CpError> {
    let records = cp.log.read(seq, 1).await?;
    let record = records
        .into_iter()
        .find(|r| r.seq == seq)
        .ok_or_else(|| CpError::Internal(format!("log record {seq} is missing")))?;
    Envelope::decode_all(&record.payload)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.id.to_string() == event_id)
        .and_then(|e| match e.event {
            Event::UsageRecorded(usage) => Some(usage),
            _ => None,
        })
        .ok_or_else(|| CpError::Internal(format!("event {event_id} is not in log record {seq}")))
}
