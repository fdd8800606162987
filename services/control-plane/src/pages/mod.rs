//! The dashboard: askama templates from `web-templates/`, one handler per
//! page and form, by domain: [`auth`] (sign-up, login, passwords),
//! [`dashboard`] (usage, accounts), [`keys`], [`settings`] (providers,
//! limits, models), [`members`], [`operator`]. Forms post back and redirect
//! (303) to a page, so a reload never repeats a change; a plaintext key or
//! invitation link is rendered directly in the response that created it,
//! and only there.

use std::sync::Arc;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use events::Role;
use serde::Deserialize;

use crate::error::PageError;
use crate::ops::Member;
use crate::session::set_cookies;
use crate::ControlPlane;

/// Every listed form carries its `csrf` field (see `CheckedForm`).
macro_rules! csrf_forms {
    ($($form:ty),*) => {$(
        impl crate::extract::CsrfForm for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}

mod auth;
pub mod billing;
mod dashboard;
mod keys;
mod members;
mod operator;
mod settings;

pub use settings::{parse_limit, ModelRow};

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
    operator: bool,
    csrf: String,
    active: &'static str,
    notice: Option<String>,
    error: Option<String>,
}

impl Nav {
    fn new(member: &Member, csrf: crate::extract::Csrf, active: &'static str) -> Nav {
        Nav {
            email: member.email.clone(),
            account: member.account_name.clone(),
            role: member.role.as_str(),
            owner: member.role == Role::Owner,
            operator: member.operator,
            csrf: csrf.0,
            active,
            notice: None,
            error: None,
        }
    }
}

/// A form with nothing but its CSRF token (a button).
#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}
csrf_forms!(CsrfOnly);

/// Logs `user` in to `account` (a new session bound to this browser's CSRF
/// token) and redirects to `to`.
async fn logged_in(
    cp: &ControlPlane,
    user: events::UserId,
    account: events::AccountId,
    to: &str,
    csrf: &str,
    https: bool,
) -> Page {
    let epoch = cp.session_epoch(user).await?;
    let mut response = see_other(to);
    set_cookies(
        response.headers_mut(),
        [cp.sessions.issue(user, account, epoch, csrf, https)],
    );
    Ok(response)
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
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route(
            "/account/password",
            get(auth::password_page).post(auth::change_password),
        )
        .route(
            "/reset/{token}",
            get(auth::reset_page).post(auth::reset_password),
        )
        .route("/dashboard", get(dashboard::dashboard))
        .route("/accounts", get(dashboard::accounts_page))
        .route("/accounts/{id}/switch", post(dashboard::switch_account))
        .route("/keys", get(keys::keys_page).post(keys::create_key))
        .route("/keys/{id}/revoke", post(keys::revoke_key))
        .route("/providers", get(settings::providers_page))
        .route("/providers/{id}", post(settings::set_block))
        .route(
            "/limits",
            get(settings::limits_page).post(settings::set_limit),
        )
        .route("/models", get(settings::models_page))
        .route("/members", get(members::members_page))
        .route("/members/invite", post(members::invite))
        .route("/members/{user}/role", post(members::set_role))
        .route("/members/{user}/remove", post(members::remove))
        .route(
            "/members/invitations/{id}/withdraw",
            post(members::withdraw),
        )
        .route(
            "/invite/{token}",
            get(members::invitation_page).post(members::accept_invitation),
        )
        .route("/invite/{token}/signup", post(members::join_by_invitation))
        .route("/operator", get(operator::operator_page))
        .route("/billing", get(billing::billing_page))
        .route("/billing/deposit", post(billing::review_deposit))
        .route("/billing/deposit/pay", post(billing::pay_deposit))
        .route("/billing/card", post(billing::save_card))
        .route("/billing/card/remove", post(billing::remove_card))
        .route("/billing/auto-recharge", post(billing::set_auto_recharge))
        .route("/billing/journal.csv", get(billing::journal_csv))
}

/// Headers every dashboard response carries: no framing (clickjacking), no
/// MIME sniffing, no referrer to other sites, and a content policy with no
/// scripts at all (the dashboard has none).
pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
