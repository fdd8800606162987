//! `GET /v1/models` and `GET /v1/models/{id}`: tiers, `auto`, catalog
//! models, the `embed-*` aliases and embedding models.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use catalog::{Catalog, EmbeddingAlias, EmbeddingModel, Model, ProviderId, Tier};
use openai::{Extra, ModelList, ModelObject};
use serde_json::json;

use crate::error::GatewayError;
use crate::keys::Caller;
use crate::Gateway;

/// Unix time the entries report as `created` (the catalog has no dates).
const CREATED: i64 = 1_735_689_600;

/// A `model` object of type `kind` with the fields in `extra`.
fn entry(id: String, owned_by: String, kind: &str, mut extra: Extra) -> ModelObject {
    extra.insert("type".into(), json!(kind));
    ModelObject {
        id,
        object: "model".into(),
        created: CREATED,
        owned_by,
        extra,
    }
}

/// An entry that names a group of models (a tier, an embedding alias).
fn group_entry<'a>(id: String, kind: &str, models: impl Iterator<Item = &'a str>) -> ModelObject {
    let mut extra = Extra::new();
    extra.insert("models".into(), json!(models.collect::<Vec<_>>()));
    entry(id, "model-router".into(), kind, extra)
}

/// The fields a chat or embedding model's entry ends with.
fn model_tail(extra: &mut Extra, gateway: &Gateway, provider: ProviderId, note: Option<&String>) {
    if let Some(note) = note {
        extra.insert("scores_note".into(), json!(note));
    }
    extra.insert(
        "available".into(),
        json!(gateway.providers.get(provider).is_some()),
    );
}

fn tier_entry(catalog: &Catalog, tier: Tier) -> ModelObject {
    let models = catalog.tier(tier).map(|m| m.id.as_str());
    group_entry(tier.to_string(), "tier", models)
}

fn model_entry(gateway: &Gateway, catalog: &Catalog, model: &Model) -> ModelObject {
    let rates = model.pricing.base;
    let mut extra = Extra::new();
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
    model_tail(
        &mut extra,
        gateway,
        model.provider,
        model.scores_note.as_ref(),
    );
    entry(model.id.clone(), model.provider.to_string(), "model", extra)
}

/// The `auto` alias: the tier is chosen per request by its score.
fn auto_entry(gateway: &Gateway) -> ModelObject {
    let mut extra = Extra::new();
    extra.insert(
        "description".into(),
        json!("Scores the conversation 0-100 and routes in the tier the score maps to."),
    );
    extra.insert(
        "thresholds".into(),
        json!({"standard_from": gateway.config.auto.standard_from, "premium_from": gateway.config.auto.premium_from}),
    );
    entry(
        crate::auto::AUTO.into(),
        "model-router".into(),
        "alias",
        extra,
    )
}

/// An `embed-*` alias and the models it may route to.
fn embedding_alias_entry(catalog: &Catalog, alias: EmbeddingAlias) -> ModelObject {
    let models = catalog.embedding_alias(alias).map(|m| m.id.as_str());
    group_entry(alias.to_string(), "embedding_alias", models)
}

fn embedding_model_entry(gateway: &Gateway, model: &EmbeddingModel) -> ModelObject {
    let mut extra = Extra::new();
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
    model_tail(
        &mut extra,
        gateway,
        model.provider,
        model.scores_note.as_ref(),
    );
    entry(
        model.id.clone(),
        model.provider.to_string(),
        "embedding_model",
        extra,
    )
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
