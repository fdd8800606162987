//! API keys: created (shown once), listed with who made them, what they
//! spent and their own limits (set by owners), revoked.

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::{html, no_store, see_other, CsrfOnly, Nav, Page};
use crate::error::CpError;
use crate::extract::{CheckedForm, Csrf, Signed};
use crate::ops::keys::KeyLimitsInput;
use crate::ops::NewKey;
use crate::queries::KeyRow;
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    nav: Nav,
    keys: Vec<KeyRow>,
    new_key: Option<NewKey>,
}

#[derive(Deserialize)]
pub(super) struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    admin: Option<String>,
}

pub(super) async fn keys_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let keys = cp.keys_of(member.account).await?;
    Ok(html(&KeysPage {
        nav: Nav::new(&member, csrf, "keys"),
        keys,
        new_key: None,
    }))
}

pub(super) async fn create_key(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<KeyForm>,
) -> Page {
    let new_key = cp
        .issue_key(&member, &f.name, f.admin.as_deref() == Some("on"))
        .await?;
    let keys = cp.keys_of(member.account).await?;
    let response = html(&KeysPage {
        nav: Nav::new(&member, csrf, "keys"),
        keys,
        new_key: Some(new_key),
    });
    Ok(no_store(response))
}

/// `POST /keys/{id}/limits`: replaces the key's limits (owners); a wrong
/// field shows the page again with the error.
pub(super) async fn set_limits(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    Path(id): Path<String>,
    CheckedForm(input): CheckedForm<KeyLimitsInput>,
) -> Page {
    match cp.set_key_limits(&member, &id, &input).await {
        Ok(_) => Ok(see_other("/keys")),
        Err(e @ CpError::Invalid { .. }) => {
            let mut nav = Nav::new(&member, csrf, "keys");
            nav.error = Some(e.public_message());
            Ok(html(&KeysPage {
                nav,
                keys: cp.keys_of(member.account).await?,
                new_key: None,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn revoke_key(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(id): Path<String>,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    cp.revoke_key(&member, &id).await?;
    Ok(see_other("/keys"))
}

csrf_forms!(KeyForm, KeyLimitsInput);

/// This area's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/keys", get(keys_page).post(create_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/{id}/limits", post(set_limits))
}
