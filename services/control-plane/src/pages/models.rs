//! The Models page: the catalog's models with their prices and circuit states.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use money::Money;

use super::{html, Nav, Page};
use crate::extract::{Csrf, Signed};
use crate::ControlPlane;

/// A catalog model as the models page and API show it.
#[derive(serde::Serialize)]
pub struct ModelRow {
    pub id: String,
    pub provider: String,
    pub tier: String,
    /// USD per million input tokens.
    pub input_price: Money,
    /// USD per million output tokens.
    pub output_price: Money,
    pub context: u32,
    pub free: bool,
    pub circuit: String,
    pub blocked: bool,
}

struct EmbeddingRow {
    id: String,
    provider: String,
    aliases: String,
    input_price: Money,
    dimensions: u32,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    nav: Nav,
    models: Vec<ModelRow>,
    embeddings: Vec<EmbeddingRow>,
}

impl ControlPlane {
    /// The catalog's chat models with the account's blocks and circuit states.
    pub(crate) fn model_rows(&self, blocked: &[String]) -> Vec<ModelRow> {
        self.catalog
            .snapshot()
            .models()
            .iter()
            .map(|m| ModelRow {
                id: m.id.clone(),
                provider: m.provider.to_string(),
                tier: m.tier.to_string(),
                input_price: m.pricing.base.input.0,
                output_price: m.pricing.base.output.0,
                context: m.context_window,
                free: m.free,
                circuit: self
                    .circuits
                    .as_ref()
                    .map_or("unknown here", |c| c.state(m.provider, &m.id).as_str())
                    .to_owned(),
                blocked: blocked.iter().any(|b| b == m.provider.as_str()),
            })
            .collect()
    }
}

pub(super) async fn models_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
) -> Page {
    let blocked = cp.blocked_of(member.account).await?;
    let embeddings = cp
        .catalog
        .snapshot()
        .embedding_models()
        .iter()
        .map(|e| EmbeddingRow {
            id: e.id.clone(),
            provider: e.provider.to_string(),
            aliases: e
                .aliases
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            input_price: e.input_per_mtok.0,
            dimensions: e.dimensions,
        })
        .collect();
    Ok(html(&ModelsPage {
        nav: Nav::new(&member, csrf, "models"),
        models: cp.model_rows(&blocked),
        embeddings,
    }))
}

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route("/models", get(models_page))
}
