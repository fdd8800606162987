//! Request extractors and the cookie middleware shared by pages and API.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::Form;

use crate::error::{ApiError, CpError, PageError};
use crate::ops::Member;
use crate::session::{self, CSRF_COOKIE, SESSION_COOKIE};
use crate::ControlPlane;

/// The client: its address for rate limits, and whether it came over HTTPS
/// (from the connection, or from a trusted proxy's headers).
pub struct ClientIp(pub IpAddr);

/// The client as the connection and trusted proxies say.
fn client(cp: &ControlPlane, parts: &Parts) -> crate::proxies::Client {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    cp.proxies.client(peer, &parts.headers)
}

impl FromRequestParts<Arc<ControlPlane>> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client(cp, parts).ip))
    }
}

/// Whether the request came over HTTPS (its cookies are then `Secure`).
pub struct Https(pub bool);

impl FromRequestParts<Arc<ControlPlane>> for Https {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Https(client(cp, parts).https))
    }
}

/// This browser's CSRF token: the cookie middleware puts it in the
/// request's extensions (a new one when the browser had none).
#[derive(Clone)]
pub struct Csrf(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Csrf {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let token = match parts.extensions.get::<Csrf>() {
            Some(Csrf(token)) => token.clone(),
            None => session::cookie(&parts.headers, CSRF_COOKIE)
                .unwrap_or_default()
                .to_owned(),
        };
        Ok(Csrf(token))
    }
}

/// A dashboard form: it carries the CSRF token it was rendered with.
pub trait CsrfForm {
    /// The submitted token.
    fn csrf(&self) -> &str;
}

/// A posted form that passed the CSRF check: the one way pages take forms,
/// so no handler can forget the check.
pub struct CheckedForm<T>(pub T);

impl<T> FromRequest<Arc<ControlPlane>> for CheckedForm<T>
where
    T: CsrfForm + serde::de::DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(
        request: Request,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let Form(form) = Form::<T>::from_request(request, cp).await.map_err(|e| {
            CpError::BadInput(format!("The form could not be read: {}", e.body_text()))
        })?;
        check_csrf(cp, &headers, form.csrf())?;
        Ok(CheckedForm(form))
    }
}

/// Refuses a form whose CSRF token is not this browser's (or not the one
/// its session was issued with).
pub fn check_csrf(cp: &ControlPlane, headers: &HeaderMap, submitted: &str) -> Result<(), CpError> {
    if cp.sessions.csrf_ok(headers, submitted) {
        Ok(())
    } else {
        Err(CpError::Csrf)
    }
}

async fn session_member(cp: &ControlPlane, headers: &HeaderMap) -> Result<Member, CpError> {
    let claims = cp.sessions.read(headers).ok_or(CpError::Unauthenticated)?;
    cp.member(claims.sub, claims.acct)
        .await?
        .filter(|m| m.session_epoch == claims.ep)
        .ok_or(CpError::Unauthenticated)
}

/// A logged-in member (pages): otherwise a redirect to the login page.
pub struct Signed(pub Member);

impl FromRequestParts<Arc<ControlPlane>> for Signed {
    type Rejection = PageError;
    async fn from_request_parts(
        parts: &mut Parts,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Signed(session_member(cp, &parts.headers).await?))
    }
}

/// The caller of the JSON API: an admin key (`Authorization: Bearer
/// mr_ak_…`, acting as an owner of its account) or a session cookie, which
/// must send the CSRF token in `X-CSRF-Token` for anything but reads.
pub struct ApiCaller(pub Member);

impl FromRequestParts<Arc<ControlPlane>> for ApiCaller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(key) = bearer(&parts.headers) {
            return match cp.admin_key_member(key).await? {
                Some(member) => Ok(ApiCaller(member)),
                None => Err(ApiError(CpError::Unauthenticated)),
            };
        }
        let member = session_member(cp, &parts.headers).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let token = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            check_csrf(cp, &parts.headers, token)?;
        }
        Ok(ApiCaller(member))
    }
}

/// The key in `Authorization: Bearer …`, trimmed.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The account of the API key (`Authorization: Bearer mr_sk_…`) a request
/// carries: for the routes API clients call with the key they send to the
/// gateway. A missing, unknown or revoked key is 401.
pub struct ApiKeyAccount(pub events::AccountId);

impl FromRequestParts<Arc<ControlPlane>> for ApiKeyAccount {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        let key = bearer(&parts.headers).ok_or(CpError::Unauthenticated)?;
        match cp.api_key_account(key).await? {
            Some(account) => Ok(ApiKeyAccount(account)),
            None => Err(ApiError(CpError::Unauthenticated)),
        }
    }
}

/// Gives every browser a CSRF cookie, and re-issues a session past half its
/// life (rotation), unless the response ends or replaces the session.
pub async fn cookies(
    State(cp): State<Arc<ControlPlane>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let https = client(&cp, &parts).https;
    let mut request = Request::from_parts(parts, body);
    let (token, new_csrf) = cp.sessions.csrf(request.headers(), https);
    // This request's handlers put the token in their forms.
    request.extensions_mut().insert(Csrf(token));
    let rotation = cp
        .sessions
        .read(request.headers())
        .filter(|claims| cp.sessions.needs_rotation(claims))
        .map(|claims| cp.sessions.reissue(&claims, https));
    let mut response = next.run(request).await;
    let replaces_session = response
        .headers()
        .get_all(axum::http::header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.starts_with(SESSION_COOKIE)));
    let rotation = rotation.filter(|_| !replaces_session);
    session::set_cookies(response.headers_mut(), new_csrf.into_iter().chain(rotation));
    response
}
