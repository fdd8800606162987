//! The JSON admin API under `/api/v1`: the dashboard's operations for
//! automation. Authenticated by an admin key (`Authorization: Bearer
//! mr_ak_…`) or a session cookie plus `X-CSRF-Token`; errors use the
//! OpenAI-style envelope `{"error": {"message", "type", "param", "code"}}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use catalog::ProviderId;
use events::Role;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, CpError};
use crate::extract::{ApiCaller, Csrf, Https};
use crate::ControlPlane;

type Reply = Result<Response, ApiError>;

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, CpError> {
    json.map(|Json(v)| v).map_err(|e| {
        CpError::BadInput(format!(
            "The JSON body could not be read: {}",
            e.body_text()
        ))
    })
}

/// The API's routes.
pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/api/v1/session", get(session))
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/api/v1/keys/{id}/limits", put(set_key_limits))
        .route("/api/v1/alerts", get(alerts).put(set_alerts))
        .route("/api/v1/providers", get(list_providers))
        .route("/api/v1/providers/{id}", put(set_block))
        .route("/api/v1/limits", get(limits).put(set_limit))
        .route("/api/v1/models", get(models))
        .route("/api/v1/members", get(members))
        .route(
            "/api/v1/members/{user}",
            put(set_role).delete(remove_member),
        )
        .route("/api/v1/invitations", axum::routing::post(invite))
        .route(
            "/api/v1/invitations/{id}",
            axum::routing::delete(withdraw_invitation),
        )
        .route("/api/v1/password", put(change_password))
        .route("/api/v1/operator", get(operator))
        .route("/api/v1/billing", get(billing))
        .route("/api/v1/billing/deposits", axum::routing::post(deposit))
        .route("/api/v1/billing/auto-recharge", put(set_auto_recharge))
        .route("/api/v1/billing/card", axum::routing::delete(remove_card))
        .route("/api/v1/billing/journal.csv", get(journal_csv))
        .route("/api/v1/credits", get(credits))
        .route("/stripe/webhook", axum::routing::post(stripe_webhook))
}

async fn session(ApiCaller(m): ApiCaller, csrf: Csrf) -> Json<Value> {
    Json(json!({
        "user": m.user, "email": m.email, "account": m.account,
        "account_name": m.account_name, "role": m.role, "csrf_token": csrf.0,
    }))
}

async fn usage(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    let usage = cp.usage_of(m.account).await?;
    let days = cp.days_of(m.account, 14).await?;
    let recent = cp.recent_of(m.account, 50).await?;
    let mut out = json!({
        "spent_today": usage.spent_today, "daily_limit": usage.daily_limit,
        "requests_today": usage.requests_today, "days": days, "recent": recent,
    });
    if m.role == Role::Owner {
        out["balance"] = json!(usage.balance);
    }
    Ok(Json(out).into_response())
}

async fn list_keys(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    Ok(Json(json!({ "keys": cp.keys_of(m.account).await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    #[serde(default)]
    admin: bool,
}

async fn create_key(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    json: Result<Json<NewKeyBody>, JsonRejection>,
) -> Reply {
    let b = body(json)?;
    let key = cp.issue_key(&m, &b.name, b.admin).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": key.id, "name": key.name, "key": key.key, "admin": key.admin })),
    )
        .into_response())
}

async fn revoke_key(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(id): Path<String>,
) -> Reply {
    cp.revoke_key(&m, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_key_limits(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(id): Path<String>,
    input: Result<Json<crate::ops::keys::KeyLimitsInput>, JsonRejection>,
) -> Reply {
    let limits = cp.set_key_limits(&m, &id, &body(input)?).await?;
    Ok(Json(json!({ "id": id, "limits": limits })).into_response())
}

async fn alerts(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    let rules = cp.alert_rules(&m).await?;
    let alerts = cp.alerts_of(m.account, 100).await?;
    Ok(Json(json!({ "rules": rules, "alerts": alerts })).into_response())
}

async fn set_alerts(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    input: Result<Json<crate::alerts::AlertRulesInput>, JsonRejection>,
) -> Reply {
    let rules = cp.set_alert_rules(&m, &body(input)?).await?;
    Ok(Json(json!({ "rules": rules })).into_response())
}

async fn list_providers(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    let blocked = cp.blocked_of(m.account).await?;
    let providers: Vec<Value> = ProviderId::ALL
        .iter()
        .map(|p| json!({ "id": p.as_str(), "blocked": blocked.iter().any(|b| b == p.as_str()) }))
        .collect();
    Ok(Json(json!({ "providers": providers })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    blocked: bool,
}

async fn set_block(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(id): Path<String>,
    json: Result<Json<BlockBody>, JsonRejection>,
) -> Reply {
    let b = body(json)?;
    cp.set_block(&m, &id, b.blocked).await?;
    Ok(Json(json!({ "id": id, "blocked": b.blocked })).into_response())
}

async fn limits(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    let usage = cp.usage_of(m.account).await?;
    Ok(
        Json(json!({ "daily_limit": usage.daily_limit, "spent_today": usage.spent_today }))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitBody {
    /// USD as a decimal string; null lifts the limit.
    daily_limit: Option<String>,
}

async fn set_limit(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    json: Result<Json<LimitBody>, JsonRejection>,
) -> Reply {
    let b = body(json)?;
    let limit = crate::input::parse_limit(b.daily_limit.as_deref().unwrap_or(""))?;
    cp.set_limit(&m, limit).await?;
    Ok(Json(json!({ "daily_limit": limit })).into_response())
}

async fn models(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    let blocked = cp.blocked_of(m.account).await?;
    Ok(Json(json!({ "models": cp.model_rows(&blocked) })).into_response())
}

async fn members(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    m.require_owner()?;
    Ok(Json(json!({
        "members": cp.members_of(m.account).await?,
        "pending_invitations": cp.pending_invitations(m.account).await?,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

async fn set_role(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(user): Path<String>,
    json: Result<Json<RoleBody>, JsonRejection>,
) -> Reply {
    let b = body(json)?;
    let role: Role = b.role.parse().map_err(CpError::BadInput)?;
    let user = user
        .parse()
        .map(events::UserId)
        .map_err(|_| CpError::NotFound)?;
    cp.set_role(&m, user, role).await?;
    Ok(Json(json!({ "user": user, "role": role })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    email: String,
    role: String,
}

async fn invite(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    json: Result<Json<InviteBody>, JsonRejection>,
) -> Reply {
    let b = body(json)?;
    let role: Role = b.role.parse().map_err(CpError::BadInput)?;
    let token = cp.invite(&m, &b.email, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "invitation_path": format!("/invite/{token}"), "token": token })),
    )
        .into_response())
}

async fn remove_member(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(user): Path<String>,
) -> Reply {
    let user = user
        .parse()
        .map(events::UserId)
        .map_err(|_| CpError::NotFound)?;
    cp.remove_member(&m, user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn withdraw_invitation(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(id): Path<String>,
) -> Reply {
    cp.withdraw_invitation(&m, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current: String,
    new: String,
}

/// Changes the calling user's password (with a session, not an admin key:
/// a key is not the person). Every other session of the user ends; this
/// one is re-issued.
async fn change_password(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Https(https): Https,
    csrf: Csrf,
    json: Result<Json<PasswordBody>, JsonRejection>,
) -> Reply {
    if m.via_admin_key {
        return Err(CpError::Forbidden(
            "Change a password with a session (log in), not an admin key.".into(),
        )
        .into());
    }
    let b = body(json)?;
    let epoch = cp.change_password(m.user, b.current, b.new).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    crate::session::set_cookies(
        response.headers_mut(),
        [cp.sessions.issue(m.user, m.account, epoch, &csrf.0, https)],
    );
    Ok(response)
}

async fn operator(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    m.require_operator()?;
    Ok(Json(cp.operator_view().await?).into_response())
}

async fn billing(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    m.require_owner()?;
    let usage = cp.usage_of(m.account).await?;
    let limits = cp.deposit_limits();
    Ok(Json(json!({
        "balance": usage.balance,
        "payments": cp.takes_payments(),
        "deposit_limits": {"min": limits.min.money(), "max": limits.max.money()},
        "fee_percent": payments::deposit::FEE_PERCENT,
        "auto_recharge": cp.auto_recharge_of(m.account).await?,
        "history": cp.history_of(m.account).await?,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositBody {
    /// USD as a decimal string.
    amount: String,
}

/// Starts a deposit: the Checkout page to send the payer to, and the amounts.
async fn deposit(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    json: Result<Json<DepositBody>, JsonRejection>,
) -> Reply {
    let b = body(json)?;
    let (deposit, checkout) = cp.start_deposit(&m, &b.amount).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "checkout_url": checkout.url, "session": checkout.session,
            "credits": deposit.credits.money(), "fee": deposit.fee.money(), "total": deposit.total().money(),
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoRechargeBody {
    enabled: bool,
    threshold: String,
    amount: String,
}

async fn set_auto_recharge(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    json: Result<Json<AutoRechargeBody>, JsonRejection>,
) -> Reply {
    let b = body(json)?;
    let settings = cp
        .set_auto_recharge(&m, b.enabled, &b.threshold, &b.amount)
        .await?;
    Ok(Json(settings).into_response())
}

async fn remove_card(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    cp.remove_card(&m).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RangeQuery {
    from: String,
    to: String,
}

async fn journal_csv(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    axum::extract::Query(range): axum::extract::Query<RangeQuery>,
) -> Reply {
    m.require_owner()?;
    let (from, to) = crate::input::day_range(&range.from, &range.to)?;
    let csv = cp.journal_csv(m.account, from, to).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        csv,
    )
        .into_response())
}

/// `GET /api/v1/credits`, callable with the account's own API key (as
/// OpenRouter's `/credits`), an admin key or a session: the balance, today's
/// spend and the daily limit.
async fn credits(
    State(cp): State<Arc<ControlPlane>>,
    headers: axum::http::HeaderMap,
    caller: Result<ApiCaller, ApiError>,
) -> Reply {
    let account = match caller {
        Ok(ApiCaller(m)) => m.account,
        Err(refused) => {
            let key = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match key {
                Some(key) => cp.api_key_account(key).await?.ok_or(refused)?,
                None => return Err(refused),
            }
        }
    };
    let usage = cp.usage_of(account).await?;
    Ok(Json(json!({
        "balance": usage.balance, "spent_today": usage.spent_today,
        "daily_limit": usage.daily_limit, "requests_today": usage.requests_today,
    }))
    .into_response())
}

/// `POST /stripe/webhook`: Stripe's events. 400 for a bad signature or body
/// (nothing recorded), 503 when it must be sent again, 200 once recorded.
async fn stripe_webhook(
    State(cp): State<Arc<ControlPlane>>,
    headers: axum::http::HeaderMap,
    payload: axum::body::Bytes,
) -> Response {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match cp.stripe_webhook(&payload, signature).await {
        Ok(()) => (StatusCode::OK, Json(json!({"received": true}))).into_response(),
        Err(e) => {
            use crate::billing::WebhookError;
            let status = match &e {
                WebhookError::Signature(_) | WebhookError::Unreadable(_) => StatusCode::BAD_REQUEST,
                WebhookError::NotConfigured | WebhookError::Retry(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            tracing::warn!(error = %e, %status, "stripe webhook not taken");
            (status, Json(json!({"error": {"message": e.to_string()}}))).into_response()
        }
    }
}
