//! The account's settings: provider blocks, the daily limit, and the
//! models of the catalog with their prices and circuit states.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use catalog::ProviderId;
use money::Money;
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

/// Reads a USD amount typed into a form: empty means none.
pub fn parse_limit(text: &str) -> Result<Option<Money>, CpError> {
    let text = text.trim().trim_start_matches('$');
    if text.is_empty() {
        return Ok(None);
    }
    let limit: Money = text.parse().map_err(|_| {
        CpError::BadInput(format!(
            "`{}` is not an amount in USD, like 5 or 12.50.",
            crate::echo(text)
        ))
    })?;
    if limit < Money::ZERO {
        return Err(CpError::BadInput(
            "The daily limit cannot be negative.".into(),
        ));
    }
    Ok(Some(limit))
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

csrf_forms!(BlockForm, LimitForm);
