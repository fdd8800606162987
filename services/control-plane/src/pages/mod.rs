//! The dashboard: askama templates from `web-templates/`, one handler per
//! page and form, by area, each module with its routes: [`auth`] (sign-up,
//! login, passwords), [`dashboard`], [`accounts`], [`keys`], [`providers`],
//! [`limits`], [`models`], [`members`], [`billing`], [`telemetry`], [`requests`], [`usage`], [`alerts`], [`public`],
//! [`operator`]. Forms post back and redirect
//! (303) to a page, so a reload never repeats a change; a plaintext key or
//! invitation link is rendered directly in the response that created it,
//! and only there.

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
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

mod accounts;
mod alerts;
mod auth;
pub mod billing;
mod dashboard;
mod keys;
mod limits;
mod members;
mod models;
mod operator;
mod providers;
mod public;
mod requests;
mod telemetry;
mod usage;

pub use crate::view::{html, ErrorPage};
pub use models::ModelRow;

type Page = Result<Response, PageError>;

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
        .merge(public::routes())
        .merge(auth::routes())
        .merge(keys::routes())
        .merge(members::routes())
        .merge(billing::routes())
        .merge(operator::routes())
        .merge(dashboard::routes())
        .merge(accounts::routes())
        .merge(providers::routes())
        .merge(limits::routes())
        .merge(models::routes())
        .merge(telemetry::routes())
        .merge(requests::routes())
        .merge(usage::routes())
        .merge(alerts::routes())
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
