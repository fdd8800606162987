//! `GET /v1/models` and `GET /v1/models/{id}`: tiers, `auto`, catalog
//! models, the `embed-*` aliases and embedding models.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use catalog::{Catalog, EmbeddingAlias, EmbeddingModel, Model, Tier};
use openai::{Extra, ModelList, ModelObject};
use serde_json::json;

use crate::error::GatewayError;
use crate::keys::Caller;
use crate::Gateway;

/// Unix time the entries report as `created` (the catalog has no dates).
const CREATED: i64 = 1_735_689_600;

fn tier_entry(catalog: &Catalog, tier: Tier) -> ModelObject {
    let mut extra = Extra::new();
    extra.insert("type".into(), json!("tier"));
    extra.insert(
        "models".into(),
        json!(catalog
            .tier(tier)
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>()),
    );
    ModelObject {
        id: tier.to_string(),
        object: "model".into(),
        created: CREATED,
        owned_by: "model-router".into(),
        extra,
    }
}

fn model_entry(gateway: &Gateway, catalog: &Catalog, model: &Model) -> ModelObject {
    let rates = model.pricing.base;
    let mut extra = Extra::new();
    extra.insert("type".into(), json!("model"));
    extra.insert("provider".into(), json!(model.provider));
    extra.insert("provider_model_id".into(), json!(model.provider_model_id));
    extra.insert("tier".into(), json!(model.tier));
    extra.insert("context_window".into(), json!(model.context_window));
    extra.insert("max_output_tokens".into(), json!(model.max_output_tokens));
    extra.insert(
        "pricing".into(),
        json!({"input_per_mtok": rates.input.0, "output_per_mtok": rates.output.0, "cached_input_per_mtok": rates.cached_input.map(|p| p.0)}),
    );
    if let Some(provider) = catalog.providers().iter().find(|p| p.id == model.provider) {
        extra.insert("pricing_source".into(), json!(provider.pricing_source));
    }
    extra.insert("free".into(), json!(model.free));
    extra.insert("capabilities".into(), json!(model.capabilities));
    extra.insert("quality".into(), json!(model.quality));
    extra.insert("coding".into(), json!(model.coding));
    if let Some(note) = &model.scores_note {
        extra.insert("scores_note".into(), json!(note));
    }
    extra.insert(
        "available".into(),
        json!(gateway.providers.get(model.provider).is_some()),
    );
    ModelObject {
        id: model.id.clone(),
        object: "model".into(),
        created: CREATED,
        owned_by: model.provider.to_string(),
        extra,
    }
}

/// The `auto` alias: the tier is chosen per request by its score.
fn auto_entry(gateway: &Gateway) -> ModelObject {
    let mut extra = Extra::new();
    extra.insert("type".into(), json!("alias"));
    extra.insert(
        "description".into(),
        json!("Scores the conversation 0-100 and routes in the tier the score maps to."),
    );
    extra.insert(
        "thresholds".into(),
        json!({"standard_from": gateway.config.auto.standard_from, "premium_from": gateway.config.auto.premium_from}),
    );
    ModelObject {
        id: crate::auto::AUTO.into(),
        object: "model".into(),
        created: CREATED,
        owned_by: "model-router".into(),
        extra,
    }
}

/// An `embed-*` alias and the models it may route to.
fn embedding_alias_entry(catalog: &Catalog, alias: EmbeddingAlias) -> ModelObject {
    let mut extra = Extra::new();
    extra.insert("type".into(), json!("embedding_alias"));
    extra.insert(
        "models".into(),
        json!(catalog
            .embedding_alias(alias)
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>()),
    );
    ModelObject {
        id: alias.to_string(),
        object: "model".into(),
        created: CREATED,
        owned_by: "model-router".into(),
        extra,
    }
}

fn embedding_model_entry(gateway: &Gateway, model: &EmbeddingModel) -> ModelObject {
    let mut extra = Extra::new();
    extra.insert("type".into(), json!("embedding_model"));
    extra.insert("provider".into(), json!(model.provider));
    extra.insert("provider_model_id".into(), json!(model.provider_model_id));
    extra.insert("aliases".into(), json!(model.aliases));
    extra.insert("dimensions".into(), json!(model.dimensions));
    extra.insert("native_dimensions".into(), json!(model.native_dimensions));
    extra.insert("max_input_tokens".into(), json!(model.max_input_tokens));
    extra.insert("batch".into(), json!(model.batch));
    extra.insert(
        "pricing".into(),
        json!({"input_per_mtok": model.input_per_mtok.0}),
    );
    extra.insert("quality".into(), json!(model.quality));
    if let Some(note) = &model.scores_note {
        extra.insert("scores_note".into(), json!(note));
    }
    extra.insert(
        "available".into(),
        json!(gateway.providers.get(model.provider).is_some()),
    );
    ModelObject {
        id: model.id.clone(),
        object: "model".into(),
        created: CREATED,
        owned_by: model.provider.to_string(),
        extra,
    }
}

/// `GET /v1/models`.
pub async fn list(
    State(gateway): State<Arc<Gateway>>,
    _caller: Caller,
) -> Result<Json<ModelList>, GatewayError> {
    let catalog = gateway.catalog.snapshot();
    let mut data: Vec<ModelObject> = Tier::ALL
        .into_iter()
        .map(|t| tier_entry(&catalog, t))
        .collect();
    data.push(auto_entry(&gateway));
    data.extend(
        catalog
            .models()
            .iter()
            .map(|m| model_entry(&gateway, &catalog, m)),
    );
    data.extend(
        EmbeddingAlias::ALL
            .into_iter()
            .map(|a| embedding_alias_entry(&catalog, a)),
    );
    data.extend(
        catalog
            .embedding_models()
            .iter()
            .map(|m| embedding_model_entry(&gateway, m)),
    );
    Ok(Json(ModelList {
        object: "list".into(),
        data,
    }))
}

/// `GET /v1/models/{id}`.
pub async fn retrieve(
    State(gateway): State<Arc<Gateway>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, GatewayError> {
    let catalog = gateway.catalog.snapshot();
    if let Some(tier) = Tier::parse(&id) {
        return Ok(Json(tier_entry(&catalog, tier)));
    }
    if id == crate::auto::AUTO {
        return Ok(Json(auto_entry(&gateway)));
    }
    if let Some(alias) = EmbeddingAlias::parse(&id) {
        return Ok(Json(embedding_alias_entry(&catalog, alias)));
    }
    if let Some(model) = catalog.embedding_model(&id) {
        return Ok(Json(embedding_model_entry(&gateway, model)));
    }
    let model = catalog.model(&id).ok_or(GatewayError::ModelNotFound(id))?;
    Ok(Json(model_entry(&gateway, &catalog, model)))
}
