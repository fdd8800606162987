//! `/operator`: the deployment's health for its operators (see `operator`).

use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;

use super::{html, Nav, Page};
use crate::extract::{Csrf, Signed};
use crate::operator::OperatorView;
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "operator.html")]
struct OperatorPage {
    nav: Nav,
    view: OperatorView,
}

pub(super) async fn operator_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    member.require_operator()?;
    let view = cp.operator_view().await?;
    Ok(html(&OperatorPage {
        nav: Nav::new(&member, csrf, "operator"),
        view,
    }))
}

/// This area's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route("/operator", get(operator_page))
}
