//! The Accounts page: the accounts a user belongs to, and switching between them.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;

use super::{html, logged_in, CsrfOnly, Nav, Page};
use crate::error::CpError;
use crate::extract::{CheckedForm, Csrf, Https, Signed};
use crate::queries::MembershipRow;
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    nav: Nav,
    accounts: Vec<MembershipRow>,
}

pub(super) async fn accounts_page(
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
pub(super) async fn switch_account(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(id): Path<String>,
    Https(https): Https,
    Csrf(csrf): Csrf,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    let account: events::AccountId = id.parse().map_err(|_| CpError::NotFound)?;
    let target = cp
        .member(member.user, account)
        .await?
        .ok_or(CpError::NotFound)?;
    logged_in(&cp, target.user, target.account, "/dashboard", &csrf, https).await
}

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/accounts", get(accounts_page))
        .route("/accounts/{id}/switch", post(switch_account))
}
