//! The dashboard's front page: today's spend, a 14-day chart, recent requests.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use money::Money;

use super::{html, Nav, Page};
use crate::extract::{Csrf, Signed};
use crate::queries::{chart_days, RequestRow};
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
    alerts: Vec<crate::alerts::AlertRow>,
}

pub(super) async fn dashboard(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let usage = cp.usage_of(member.account).await?;
    let days = cp.days_of(member.account, 14).await?;
    let recent = cp.recent_of(member.account, 25).await?;
    let alerts = cp.alerts_of(member.account, 5).await?;
    Ok(html(&DashboardPage {
        nav: Nav::new(&member, csrf, "dashboard"),
        balance: usage.balance,
        spent_today: usage.spent_today,
        daily_limit: usage.daily_limit,
        requests_today: usage.requests_today,
        days: days.len(),
        chart: crate::chart::svg(&chart_days(&days)),
        recent,
        alerts,
    }))
}

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route("/dashboard", get(dashboard))
}
