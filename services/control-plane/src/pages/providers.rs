//! The Providers page: block or unblock a provider for the account.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use catalog::ProviderId;
use serde::Deserialize;

use super::{html, see_other, Nav, Page};
use crate::error::CpError;
use crate::extract::{CheckedForm, Csrf, Signed};
use crate::ControlPlane;

struct ProviderRow {
    id: &'static str,
    name: String,
    blocked: bool,
    impact: String,
}

#[derive(Template)]
#[template(path = "providers.html")]
struct ProvidersPage {
    nav: Nav,
    providers: Vec<ProviderRow>,
}

#[derive(Deserialize)]
pub(super) struct BlockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    blocked: String,
}

pub(super) async fn providers_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let blocked = cp.blocked_of(member.account).await?;
    let catalog = cp.catalog.snapshot();
    let providers = ProviderId::ALL
        .iter()
        .map(|&p| {
            let models: Vec<&str> = catalog
                .models()
                .iter()
                .filter(|m| m.provider == p)
                .map(|m| m.id.as_str())
                .collect();
            let embeddings = catalog
                .embedding_models()
                .iter()
                .filter(|m| m.provider == p)
                .count();
            let mut impact = if models.is_empty() {
                "No chat models in the catalog.".to_owned()
            } else {
                format!(
                    "Skips {} chat model(s): {}.",
                    models.len(),
                    models.join(", ")
                )
            };
            if embeddings > 0 {
                impact.push_str(&format!(" Skips {embeddings} embedding model(s)."));
            }
            ProviderRow {
                id: p.as_str(),
                name: catalog
                    .providers()
                    .iter()
                    .find(|i| i.id == p)
                    .map_or_else(|| p.to_string(), |i| i.name.clone()),
                blocked: blocked.iter().any(|b| b == p.as_str()),
                impact,
            }
        })
        .collect();
    Ok(html(&ProvidersPage {
        nav: Nav::new(&member, csrf, "providers"),
        providers,
    }))
}

pub(super) async fn set_block(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(provider): Path<String>,
    CheckedForm(f): CheckedForm<BlockForm>,
) -> Page {
    let blocked = match f.blocked.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(CpError::BadInput(format!(
                "`blocked` must be true or false, not `{}`.",
                crate::echo(other)
            ))
            .into())
        }
    };
    cp.set_block(&member, &provider, blocked).await?;
    Ok(see_other("/providers"))
}

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/providers", get(providers_page))
        .route("/providers/{id}", post(set_block))
}
csrf_forms!(BlockForm);
