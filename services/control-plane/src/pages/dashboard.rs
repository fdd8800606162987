//! The dashboard's front page (today's spend, a 14-day chart, recent
//! requests) and the accounts a user belongs to.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use money::Money;

use super::{html, logged_in, CsrfOnly, Nav, Page};
use crate::error::CpError;
use crate::extract::{CheckedForm, Csrf, Https, Signed};
use crate::queries::{chart_days, MembershipRow, RequestRow};
use crate::ControlPlane;

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

pub(super) async fn dashboard(
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
