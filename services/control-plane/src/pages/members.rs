//! Members and invitations: invite by link (shown once, works once, for
//! the invited email, until it expires or is withdrawn), roles, removal.

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use events::Role;
use serde::Deserialize;

use super::{html, logged_in, no_store, see_other, CsrfOnly, Nav, Page};
use crate::error::CpError;
use crate::extract::{CheckedForm, ClientIp, Csrf, Https, Signed};
use crate::ops::Member;
use crate::queries::{InvitationRow, MemberRow};
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    nav: Nav,
    members: Vec<MemberRow>,
    pending: Vec<InvitationRow>,
    invitation_link: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
pub(super) struct RoleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

fn role(text: &str) -> Result<Role, CpError> {
    text.parse().map_err(CpError::BadInput)
}

pub(super) async fn members_view(
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

pub(super) async fn members_page(
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

pub(super) async fn invite(
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

pub(super) async fn set_role(
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

pub(super) async fn invite_view(
    cp: &ControlPlane,
    headers: &HeaderMap,
    csrf: Csrf,
    token: String,
    error: Option<String>,
) -> Page {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CpError::NotFound.into());
    }
    let invitation = cp.invitation(&token).await?;
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
            account: invitation.account_name,
            email: invitation.email,
            role: invitation.role.as_str(),
            signed_in: cp.sessions.read(headers).is_some(),
            error,
            min_len: crate::passwords::MIN_LEN,
        }),
    )
        .into_response())
}

pub(super) async fn invitation_page(
    State(cp): State<Arc<ControlPlane>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    csrf: Csrf,
) -> Page {
    invite_view(&cp, &headers, csrf, token, None).await
}

pub(super) async fn accept_invitation(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Https(https): Https,
    Csrf(csrf): Csrf,
    Path(token): Path<String>,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    let account = cp.accept(&token, member.user, &member.email).await?;
    logged_in(&cp, member.user, account, "/dashboard", &csrf, https).await
}

#[derive(Deserialize)]
pub(super) struct JoinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn join_by_invitation(
    State(cp): State<Arc<ControlPlane>>,
    ClientIp(ip): ClientIp,
    Https(https): Https,
    Path(token): Path<String>,
    headers: HeaderMap,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<JoinForm>,
) -> Page {
    cp.limiter.attempt(ip)?;
    let token_value = csrf.0.clone();
    match cp.join(&token, f.password).await {
        Ok((user, account)) => {
            logged_in(&cp, user, account, "/dashboard", &token_value, https).await
        }
        Err(e @ (CpError::BadInput(_) | CpError::Conflict(_))) => {
            invite_view(&cp, &headers, csrf, token, Some(e.to_string())).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes a member (their sessions and the keys they made end at once).
pub(super) async fn remove(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(user): Path<String>,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    let user = user
        .parse()
        .map(events::UserId)
        .map_err(|_| CpError::NotFound)?;
    cp.remove_member(&member, user).await?;
    Ok(see_other("/members"))
}

/// Withdraws an open invitation: its link stops working.
pub(super) async fn withdraw(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(id): Path<String>,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    cp.withdraw_invitation(&member, &id).await?;
    Ok(see_other("/members"))
}

csrf_forms!(InviteForm, RoleForm, JoinForm);

/// This area's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/members", get(members_page))
        .route("/members/invite", post(invite))
        .route("/members/{user}/role", post(set_role))
        .route("/members/{user}/remove", post(remove))
        .route("/members/invitations/{id}/withdraw", post(withdraw))
        .route(
            "/invite/{token}",
            get(invitation_page).post(accept_invitation),
        )
        .route("/invite/{token}/signup", post(join_by_invitation))
}
