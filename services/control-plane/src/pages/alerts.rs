//! The alerts page: the account's latest alerts with how each was
//! delivered, and (for owners) the rules: thresholds, webhook and email.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::routing::get;
use axum::Router;

use super::{html, see_other, Nav, Page};
use crate::alerts::{AlertRow, AlertRulesInput};
use crate::error::CpError;
use crate::extract::{CheckedForm, Csrf, Signed};
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: Nav,
    alerts: Vec<AlertRow>,
    /// The form's values: daily percents, key percents, balance floor,
    /// recharge failed, webhook URL, emails.
    form: (String, String, String, bool, String, String),
    /// Shown to owners, to verify signatures with.
    secret: String,
    smtp: bool,
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn render(cp: &ControlPlane, member: &crate::ops::Member, nav: Nav) -> Page {
    let rules = cp.alert_rules(member).await?;
    Ok(html(&AlertsPage {
        nav,
        alerts: cp.alerts_of(member.account, 50).await?,
        form: (
            join(&rules.daily_limit_percents),
            join(&rules.key_budget_percents),
            rules
                .balance_below
                .map(|m| m.to_string())
                .unwrap_or_default(),
            rules.recharge_failed,
            rules.webhook_url.clone().unwrap_or_default(),
            rules.emails.join(", "),
        ),
        secret: rules.webhook_secret,
        smtp: cp.mail.smtp_url.is_some(),
    }))
}

async fn page(State(cp): State<Arc<ControlPlane>>, Signed(member): Signed, csrf: Csrf) -> Page {
    let nav = Nav::new(&member, csrf, "alerts");
    render(&cp, &member, nav).await
}

async fn save(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(input): CheckedForm<AlertRulesInput>,
) -> Page {
    match cp.set_alert_rules(&member, &input).await {
        Ok(_) => Ok(see_other("/alerts")),
        Err(e @ CpError::Invalid { .. }) => {
            let mut nav = Nav::new(&member, csrf, "alerts");
            nav.error = Some(e.public_message());
            render(&cp, &member, nav).await
        }
        Err(e) => Err(e.into()),
    }
}

csrf_forms!(AlertRulesInput);

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route("/alerts", get(page).post(save))
}
