//! The dashboard: askama templates from `web-templates/`, one handler per
//! page and form. Forms post back and redirect (303) to a page, so a reload
//! never repeats a change; a plaintext key or invitation link is rendered
//! directly in the response that created it, and only there.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use catalog::ProviderId;
use events::Role;
use money::Money;
use serde::Deserialize;

use crate::error::{CpError, PageError};
use crate::extract::{CheckedForm, ClientIp, Csrf, CsrfForm, Signed};
use crate::ops::{Member, NewKey};
use crate::queries::{chart_days, KeyRow, MemberRow, MembershipRow, RequestRow};
use crate::session::set_cookies;
use crate::ControlPlane;

type Page = Result<Response, PageError>;

/// Renders a template (a failure is logged and shown as a plain 500).
pub fn html<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered.",
            )
                .into_response()
        }
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
}

/// What the logged-in layout shows.
pub struct Nav {
    email: String,
    account: String,
    role: &'static str,
    owner: bool,
    csrf: String,
    active: &'static str,
    notice: Option<String>,
    error: Option<String>,
}

impl Nav {
    fn new(member: &Member, csrf: Csrf, active: &'static str) -> Nav {
        Nav {
            email: member.email.clone(),
            account: member.account_name.clone(),
            role: member.role.as_str(),
            owner: member.role == Role::Owner,
            csrf: csrf.0,
            active,
            notice: None,
            error: None,
        }
    }
}

/// Marks a response that shows a secret once: not to be cached or kept.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The dashboard's routes (behind the cookie middleware).
pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/signup", get(signup_page).post(signup))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/dashboard", get(dashboard))
        .route("/accounts", get(accounts_page))
        .route("/accounts/{id}/switch", post(switch_account))
        .route("/keys", get(keys_page).post(create_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/providers", get(providers_page))
        .route("/providers/{id}", post(set_block))
        .route("/limits", get(limits_page).post(set_limit))
        .route("/models", get(models_page))
        .route("/members", get(members_page))
        .route("/members/invite", post(invite))
        .route("/members/{user}/role", post(set_role))
        .route(
            "/invite/{token}",
            get(invitation_page).post(accept_invitation),
        )
        .route("/invite/{token}/signup", post(join_by_invitation))
}

// ----- sign up, log in, log out -----

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    csrf: String,
    email: String,
    account_name: String,
    error: Option<String>,
    min_len: usize,
}

#[derive(Deserialize)]
struct SignupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    account_name: String,
}

async fn signup_page(Csrf(csrf): Csrf) -> Response {
    html(&SignupPage {
        csrf,
        email: String::new(),
        account_name: String::new(),
        error: None,
        min_len: crate::passwords::MIN_LEN,
    })
}

async fn logged_in(
    cp: &ControlPlane,
    user: events::UserId,
    account: events::AccountId,
    to: &str,
) -> Page {
    let epoch = cp.session_epoch(user).await?;
    let mut response = see_other(to);
    set_cookies(
        response.headers_mut(),
        [cp.sessions.issue(user, account, epoch)],
    );
    Ok(response)
}

async fn signup(
    State(cp): State<Arc<ControlPlane>>,
    ClientIp(ip): ClientIp,
    Csrf(csrf): Csrf,
    CheckedForm(f): CheckedForm<SignupForm>,
) -> Page {
    cp.limiter.attempt(ip)?;
    match cp.sign_up(&f.email, f.password, &f.account_name).await {
        Ok((user, account)) => logged_in(&cp, user, account, "/dashboard").await,
        Err(e @ (CpError::BadInput(_) | CpError::Conflict(_))) => {
            let status = if matches!(e, CpError::Conflict(_)) {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            Ok((
                status,
                html(&SignupPage {
                    csrf,
                    email: f.email,
                    account_name: f.account_name,
                    error: Some(e.to_string()),
                    min_len: crate::passwords::MIN_LEN,
                }),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Every form below carries its `csrf` field.
macro_rules! csrf_forms {
    ($($form:ty),*) => {$(
        impl CsrfForm for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}
csrf_forms!(
    SignupForm, LoginForm, CsrfOnly, KeyForm, BlockForm, LimitForm, InviteForm, RoleForm, JoinForm
);

/// Only local paths are followed after login (no open redirect).
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/dashboard"
    }
}

async fn login_page(Csrf(csrf): Csrf, Query(q): Query<NextQuery>) -> Response {
    html(&LoginPage {
        csrf,
        email: String::new(),
        next: safe_next(&q.next).to_owned(),
        error: None,
    })
}

async fn login(
    State(cp): State<Arc<ControlPlane>>,
    ClientIp(ip): ClientIp,
    Csrf(csrf): Csrf,
    CheckedForm(f): CheckedForm<LoginForm>,
) -> Page {
    cp.limiter.attempt(ip)?;
    match cp.log_in(&f.email, f.password).await {
        Ok((user, account)) => logged_in(&cp, user, account, safe_next(&f.next)).await,
        Err(CpError::BadInput(message)) => Ok((
            StatusCode::UNAUTHORIZED,
            html(&LoginPage {
                csrf,
                email: f.email,
                next: safe_next(&f.next).to_owned(),
                error: Some(message),
            }),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    if let Some(claims) = cp.sessions.read(&headers) {
        cp.end_sessions(claims.sub).await?;
    }
    let mut response = see_other("/login");
    set_cookies(response.headers_mut(), [cp.sessions.clear()]);
    Ok(response)
}

// ----- dashboard -----

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    nav: Nav,
    balance: Money,
    spent_today: Money,
    daily_limit: Option<Money>,
    requests_today: u64,
    days: usize,
    chart: String,
    recent: Vec<RequestRow>,
}

async fn dashboard(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let usage = cp.usage_of(member.account).await?;
    let days = cp.days_of(member.account, 14).await?;
    let recent = cp.recent_of(member.account, 25).await?;
    Ok(html(&DashboardPage {
        nav: Nav::new(&member, csrf, "dashboard"),
        balance: usage.balance,
        spent_today: usage.spent_today,
        daily_limit: usage.daily_limit,
        requests_today: usage.requests_today,
        days: days.len(),
        chart: crate::chart::svg(&chart_days(&days)),
        recent,
    }))
}

// ----- accounts (a user may belong to several) -----

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    nav: Nav,
    accounts: Vec<MembershipRow>,
}

async fn accounts_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let accounts = cp.memberships_of(member.user, member.account).await?;
    Ok(html(&AccountsPage {
        nav: Nav::new(&member, csrf, "accounts"),
        accounts,
    }))
}

/// Re-issues the session for another account of the same user; 404 when
/// the user is not a member of it.
async fn switch_account(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(id): Path<String>,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    let account: events::AccountId = id.parse().map_err(|_| CpError::NotFound)?;
    let target = cp
        .member(member.user, account)
        .await?
        .ok_or(CpError::NotFound)?;
    logged_in(&cp, target.user, target.account, "/dashboard").await
}

// ----- keys -----

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    nav: Nav,
    keys: Vec<KeyRow>,
    new_key: Option<NewKey>,
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    admin: Option<String>,
}

async fn keys_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let keys = cp.keys_of(member.account).await?;
    Ok(html(&KeysPage {
        nav: Nav::new(&member, csrf, "keys"),
        keys,
        new_key: None,
    }))
}

async fn create_key(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<KeyForm>,
) -> Page {
    let new_key = cp
        .issue_key(&member, &f.name, f.admin.as_deref() == Some("on"))
        .await?;
    let keys = cp.keys_of(member.account).await?;
    let response = html(&KeysPage {
        nav: Nav::new(&member, csrf, "keys"),
        keys,
        new_key: Some(new_key),
    });
    Ok(no_store(response))
}

async fn revoke_key(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(id): Path<String>,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    cp.revoke_key(&member, &id).await?;
    Ok(see_other("/keys"))
}

// ----- providers -----

struct ProviderRow {
    id: &'static str,
    name: String,
    blocked: bool,
    impact: String,
}

#[derive(Template)]
#[template(path = "providers.html")]
struct ProvidersPage {
    nav: Nav,
    providers: Vec<ProviderRow>,
}

#[derive(Deserialize)]
struct BlockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    blocked: String,
}

async fn providers_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let blocked = cp.blocked_of(member.account).await?;
    let catalog = cp.catalog.snapshot();
    let providers = ProviderId::ALL
        .iter()
        .map(|&p| {
            let models: Vec<&str> = catalog
                .models()
                .iter()
                .filter(|m| m.provider == p)
                .map(|m| m.id.as_str())
                .collect();
            let embeddings = catalog
                .embedding_models()
                .iter()
                .filter(|m| m.provider == p)
                .count();
            let mut impact = if models.is_empty() {
                "No chat models in the catalog.".to_owned()
            } else {
                format!(
                    "Skips {} chat model(s): {}.",
                    models.len(),
                    models.join(", ")
                )
            };
            if embeddings > 0 {
                impact.push_str(&format!(" Skips {embeddings} embedding model(s)."));
            }
            ProviderRow {
                id: p.as_str(),
                name: catalog
                    .providers()
                    .iter()
                    .find(|i| i.id == p)
                    .map_or_else(|| p.to_string(), |i| i.name.clone()),
                blocked: blocked.iter().any(|b| b == p.as_str()),
                impact,
            }
        })
        .collect();
    Ok(html(&ProvidersPage {
        nav: Nav::new(&member, csrf, "providers"),
        providers,
    }))
}

async fn set_block(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(provider): Path<String>,
    CheckedForm(f): CheckedForm<BlockForm>,
) -> Page {
    let blocked = match f.blocked.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(CpError::BadInput(format!(
                "`blocked` must be true or false, not `{other}`."
            ))
            .into())
        }
    };
    cp.set_block(&member, &provider, blocked).await?;
    Ok(see_other("/providers"))
}

// ----- limits -----

#[derive(Template)]
#[template(path = "limits.html")]
struct LimitsPage {
    nav: Nav,
    spent_today: Money,
    daily_limit: Option<Money>,
    limit_input: String,
}

#[derive(Deserialize)]
struct LimitForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    daily_limit: String,
}

/// Reads a USD amount typed into a form: empty means none.
pub fn parse_limit(text: &str) -> Result<Option<Money>, CpError> {
    let text = text.trim().trim_start_matches('$');
    if text.is_empty() {
        return Ok(None);
    }
    let limit: Money = text.parse().map_err(|_| {
        CpError::BadInput(format!(
            "`{text}` is not an amount in USD, like 5 or 12.50."
        ))
    })?;
    if limit < Money::ZERO {
        return Err(CpError::BadInput(
            "The daily limit cannot be negative.".into(),
        ));
    }
    Ok(Some(limit))
}

async fn limits_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let usage = cp.usage_of(member.account).await?;
    Ok(html(&LimitsPage {
        nav: Nav::new(&member, csrf, "limits"),
        spent_today: usage.spent_today,
        daily_limit: usage.daily_limit,
        limit_input: usage.daily_limit.map(|l| l.to_string()).unwrap_or_default(),
    }))
}

async fn set_limit(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<LimitForm>,
) -> Page {
    match parse_limit(&f.daily_limit) {
        Ok(limit) => {
            cp.set_limit(&member, limit).await?;
            Ok(see_other("/limits"))
        }
        Err(e) => {
            let usage = cp.usage_of(member.account).await?;
            let mut nav = Nav::new(&member, csrf, "limits");
            nav.error = Some(e.to_string());
            Ok((
                StatusCode::BAD_REQUEST,
                html(&LimitsPage {
                    nav,
                    spent_today: usage.spent_today,
                    daily_limit: usage.daily_limit,
                    limit_input: f.daily_limit,
                }),
            )
                .into_response())
        }
    }
}

// ----- models -----

/// A catalog model as the models page and API show it.
#[derive(serde::Serialize)]
pub struct ModelRow {
    pub id: String,
    pub provider: String,
    pub tier: String,
    /// USD per million input tokens.
    pub input_price: Money,
    /// USD per million output tokens.
    pub output_price: Money,
    pub context: u32,
    pub free: bool,
    pub circuit: String,
    pub blocked: bool,
}

struct EmbeddingRow {
    id: String,
    provider: String,
    aliases: String,
    input_price: Money,
    dimensions: u32,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    nav: Nav,
    models: Vec<ModelRow>,
    embeddings: Vec<EmbeddingRow>,
}

impl ControlPlane {
    /// The catalog's chat models with the account's blocks and circuit states.
    pub(crate) fn model_rows(&self, blocked: &[String]) -> Vec<ModelRow> {
        self.catalog
            .snapshot()
            .models()
            .iter()
            .map(|m| ModelRow {
                id: m.id.clone(),
                provider: m.provider.to_string(),
                tier: m.tier.to_string(),
                input_price: m.pricing.base.input.0,
                output_price: m.pricing.base.output.0,
                context: m.context_window,
                free: m.free,
                circuit: self
                    .circuits
                    .as_ref()
                    .map_or("unknown here", |c| c.state(m.provider, &m.id))
                    .to_owned(),
                blocked: blocked.iter().any(|b| b == m.provider.as_str()),
            })
            .collect()
    }
}

async fn models_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let blocked = cp.blocked_of(member.account).await?;
    let embeddings = cp
        .catalog
        .snapshot()
        .embedding_models()
        .iter()
        .map(|e| EmbeddingRow {
            id: e.id.clone(),
            provider: e.provider.to_string(),
            aliases: e
                .aliases
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            input_price: e.input_per_mtok.0,
            dimensions: e.dimensions,
        })
        .collect();
    Ok(html(&ModelsPage {
        nav: Nav::new(&member, csrf, "models"),
        models: cp.model_rows(&blocked),
        embeddings,
    }))
}

// ----- members and invitations -----

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    nav: Nav,
    members: Vec<MemberRow>,
    pending: Vec<String>,
    invitation_link: Option<String>,
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

fn role(text: &str) -> Result<Role, CpError> {
    text.parse().map_err(CpError::BadInput)
}

async fn members_view(
    cp: &ControlPlane,
    member: &Member,
    csrf: Csrf,
    link: Option<String>,
) -> Page {
    member.require_owner()?;
    Ok(html(&MembersPage {
        nav: Nav::new(member, csrf, "members"),
        members: cp.members_of(member.account).await?,
        pending: cp.pending_invitations(member.account).await?,
        invitation_link: link,
    }))
}

async fn members_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    members_view(&cp, &member, csrf, None).await
}

/// The origin links are built on: the request's `Host`.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn invite(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    headers: HeaderMap,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<InviteForm>,
) -> Page {
    let token = cp.invite(&member, &f.email, role(&f.role)?).await?;
    let link = format!("{}/invite/{token}", origin(&headers));
    let response = members_view(&cp, &member, csrf, Some(link)).await?;
    Ok(no_store(response))
}

async fn set_role(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(user): Path<String>,
    CheckedForm(f): CheckedForm<RoleForm>,
) -> Page {
    let user = user
        .parse()
        .map(events::UserId)
        .map_err(|_| CpError::NotFound)?;
    cp.set_role(&member, user, role(&f.role)?).await?;
    Ok(see_other("/members"))
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    csrf: String,
    token: String,
    account: String,
    email: String,
    role: &'static str,
    signed_in: bool,
    error: Option<String>,
    min_len: usize,
}

async fn invite_view(
    cp: &ControlPlane,
    headers: &HeaderMap,
    csrf: Csrf,
    token: String,
    error: Option<String>,
) -> Page {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CpError::NotFound.into());
    }
    let (_, _, account, email, role) = cp.invitation(&token).await?;
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        html(&InvitePage {
            csrf: csrf.0,
            token,
            account,
            email,
            role: role.as_str(),
            signed_in: cp.sessions.read(headers).is_some(),
            error,
            min_len: crate::passwords::MIN_LEN,
        }),
    )
        .into_response())
}

async fn invitation_page(
    State(cp): State<Arc<ControlPlane>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    csrf: Csrf,
) -> Page {
    invite_view(&cp, &headers, csrf, token, None).await
}

async fn accept_invitation(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(token): Path<String>,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    let account = cp.accept(&token, member.user, &member.email).await?;
    logged_in(&cp, member.user, account, "/dashboard").await
}

#[derive(Deserialize)]
struct JoinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn join_by_invitation(
    State(cp): State<Arc<ControlPlane>>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    headers: HeaderMap,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<JoinForm>,
) -> Page {
    cp.limiter.attempt(ip)?;
    match cp.join(&token, f.password).await {
        Ok((user, account)) => logged_in(&cp, user, account, "/dashboard").await,
        Err(e @ (CpError::BadInput(_) | CpError::Conflict(_))) => {
            invite_view(&cp, &headers, csrf, token, Some(e.to_string())).await
        }
        Err(e) => Err(e.into()),
    }
}
