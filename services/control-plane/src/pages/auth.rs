//! Sign-up, login, logout, and passwords: changed by their user (the
//! current one required) or set through an operator's one-time reset link.

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{html, logged_in, no_store, see_other, CsrfOnly, Nav, Page};
use crate::error::CpError;
use crate::extract::{CheckedForm, ClientIp, Csrf, Https, Signed};
use crate::ops::AfterLogin;
use crate::session::set_cookies;
use crate::ControlPlane;

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
pub(super) struct SignupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    account_name: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    next: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    notice: String,
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: Nav,
    min_len: usize,
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    csrf: String,
    token: String,
    email: String,
    error: Option<String>,
    min_len: usize,
}

#[derive(Deserialize)]
pub(super) struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

csrf_forms!(SignupForm, LoginForm, PasswordForm, ResetForm);

/// What the login page says after a sign-up: the same whether or not the
/// email already had a user, so the form never tells which emails do.
const SIGNED_UP: &str = "Your account is ready: log in with the email and password you chose. (If the email already had a user, use that user's password: the new account was added to it.)";

pub(super) async fn signup_page(Csrf(csrf): Csrf) -> Response {
    html(&SignupPage {
        csrf,
        email: String::new(),
        account_name: String::new(),
        error: None,
        min_len: crate::passwords::MIN_LEN,
    })
}

/// Opens the account, then sends everyone to the login page with the same
/// words (see [`ControlPlane::sign_up`]); only a malformed form is an error.
pub(super) async fn signup(
    State(cp): State<Arc<ControlPlane>>,
    ClientIp(ip): ClientIp,
    Csrf(csrf): Csrf,
    CheckedForm(f): CheckedForm<SignupForm>,
) -> Page {
    cp.limiter.attempt(ip)?;
    match cp.sign_up(&f.email, f.password, &f.account_name).await {
        Ok(_) => Ok(see_other("/login?notice=signed_up")),
        Err(e @ CpError::BadInput(_)) => Ok((
            StatusCode::BAD_REQUEST,
            html(&SignupPage {
                csrf,
                email: f.email,
                account_name: f.account_name,
                error: Some(e.to_string()),
                min_len: crate::passwords::MIN_LEN,
            }),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// Where to go after login: a path on this site only. Browsers drop tabs
/// and newlines from URLs and read `\` as `/`, so `/\t/evil.example` would
/// leave the site: any control character, whitespace or backslash, a
/// second leading slash, or anything but a path is refused, as typed and
/// once percent-decoded (some hop on the way may decode it).
pub fn safe_next(next: &str) -> &str {
    if next.len() <= 2_000 && local_path(next) && local_path(&percent_decoded(next)) {
        next
    } else {
        "/dashboard"
    }
}

fn local_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/'))
        && !path
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) async fn login_page(Csrf(csrf): Csrf, Query(q): Query<LoginQuery>) -> Response {
    html(&LoginPage {
        csrf,
        email: String::new(),
        next: safe_next(&q.next).to_owned(),
        notice: (q.notice == "signed_up").then_some(SIGNED_UP),
        error: None,
    })
}

pub(super) async fn login(
    State(cp): State<Arc<ControlPlane>>,
    ClientIp(ip): ClientIp,
    Https(https): Https,
    Csrf(csrf): Csrf,
    CheckedForm(f): CheckedForm<LoginForm>,
) -> Page {
    cp.limiter.attempt(ip)?;
    match cp.log_in(&f.email, f.password).await {
        Ok((user, account, after)) => {
            let to = match after {
                AfterLogin::ChangePassword => "/account/password",
                AfterLogin::Continue => safe_next(&f.next),
            };
            logged_in(&cp, user, account, to, &csrf, https).await
        }
        Err(CpError::BadInput(message)) => Ok((
            StatusCode::UNAUTHORIZED,
            html(&LoginPage {
                csrf,
                email: f.email,
                next: safe_next(&f.next).to_owned(),
                notice: None,
                error: Some(message),
            }),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn logout(
    State(cp): State<Arc<ControlPlane>>,
    Https(https): Https,
    headers: HeaderMap,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    if let Some(claims) = cp.sessions.read(&headers) {
        cp.end_sessions(claims.sub).await?;
    }
    let mut response = see_other("/login");
    set_cookies(response.headers_mut(), [cp.sessions.clear(https)]);
    Ok(response)
}

async fn password_view(
    cp: &ControlPlane,
    member: &crate::ops::Member,
    csrf: Csrf,
    notice: Option<String>,
    error: Option<String>,
) -> Result<PasswordPage, CpError> {
    let mut nav = Nav::new(member, csrf, "password");
    nav.notice = match notice {
        Some(n) => Some(n),
        None if cp.must_change_password(member.user).await? => Some(
            "You are using a password you were given: choose your own before you go on.".into(),
        ),
        None => None,
    };
    nav.error = error;
    Ok(PasswordPage {
        nav,
        min_len: crate::passwords::MIN_LEN,
    })
}

pub(super) async fn password_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    Ok(html(&password_view(&cp, &member, csrf, None, None).await?))
}

/// Changes the password; every other session of the user ends, this one
/// goes on (re-issued in the new session epoch).
pub(super) async fn change_password(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Https(https): Https,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<PasswordForm>,
) -> Page {
    match cp.change_password(member.user, f.current, f.new).await {
        Ok(epoch) => {
            let token = csrf.0.clone();
            let page = password_view(
                &cp,
                &member,
                csrf,
                Some("Password changed. Every other session of yours has ended.".into()),
                None,
            )
            .await?;
            let mut response = html(&page);
            set_cookies(
                response.headers_mut(),
                [cp.sessions
                    .issue(member.user, member.account, epoch, &token, https)],
            );
            Ok(response)
        }
        Err(e @ CpError::BadInput(_)) => {
            let page = password_view(&cp, &member, csrf, None, Some(e.to_string())).await?;
            Ok((StatusCode::BAD_REQUEST, html(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

fn reset_token(token: &str) -> Result<(), CpError> {
    if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(CpError::NotFound)
    }
}

pub(super) async fn reset_page(
    State(cp): State<Arc<ControlPlane>>,
    Path(token): Path<String>,
    Csrf(csrf): Csrf,
) -> Page {
    reset_token(&token)?;
    let (_, email) = cp.reset_target(&token).await?;
    Ok(no_store(html(&ResetPage {
        csrf,
        token,
        email,
        error: None,
        min_len: crate::passwords::MIN_LEN,
    })))
}

pub(super) async fn reset_password(
    State(cp): State<Arc<ControlPlane>>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    Csrf(csrf): Csrf,
    CheckedForm(f): CheckedForm<ResetForm>,
) -> Page {
    cp.limiter.attempt(ip)?;
    reset_token(&token)?;
    match cp.reset_password(&token, f.password).await {
        Ok(_) => Ok(see_other("/login")),
        Err(e @ CpError::BadInput(_)) => {
            let (_, email) = cp.reset_target(&token).await?;
            Ok((
                StatusCode::BAD_REQUEST,
                no_store(html(&ResetPage {
                    csrf,
                    token,
                    email,
                    error: Some(e.to_string()),
                    min_len: crate::passwords::MIN_LEN,
                })),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// This area's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/signup", get(signup_page).post(signup))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route(
            "/account/password",
            get(password_page).post(change_password),
        )
        .route("/reset/{token}", get(reset_page).post(reset_password))
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_on_this_site_are_followed_after_login() {
        for good in ["/keys", "/members?x=1", "/a/b#c", "/keys%2Dlist"] {
            assert_eq!(safe_next(good), good);
        }
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "evil.example",
            "/ /evil.example",
            "",
            "/\u{0}x",
            "/%09/evil.example",
            "/%2F%2Fevil.example",
            "/%5Cevil.example",
        ] {
            assert_eq!(safe_next(bad), "/dashboard", "{bad:?}");
        }
    }
}
