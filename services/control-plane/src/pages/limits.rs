//! The Limits page: the account's daily spend limit.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use money::Money;
use serde::Deserialize;

use super::{html, see_other, Nav, Page};
use crate::extract::{CheckedForm, Csrf, Signed};
use crate::input::parse_limit;
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "limits.html")]
struct LimitsPage {
    nav: Nav,
    spent_today: Money,
    daily_limit: Option<Money>,
    limit_input: String,
}

#[derive(Deserialize)]
pub(super) struct LimitForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    daily_limit: String,
}

pub(super) async fn limits_page(
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

pub(super) async fn set_limit(
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

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route("/limits", get(limits_page).post(set_limit))
}
csrf_forms!(LimitForm);
