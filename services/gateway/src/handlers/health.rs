//! `GET /v1/router/health` (JSON, API key required) and `GET /metrics`
//! (Prometheus text, unauthenticated so a scraper needs no key; it shows
//! states and counts, never prompts or keys).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::GatewayError;
use crate::health::{Monitored, Report};
use crate::keys::Caller;
use crate::Gateway;

fn snapshot(gateway: &Gateway) -> Report {
    let catalog = gateway.catalog.snapshot();
    let chat = catalog
        .models()
        .iter()
        .map(|m| m.as_ref() as &dyn Monitored);
    let embedding = catalog
        .embedding_models()
        .iter()
        .map(|m| m.as_ref() as &dyn Monitored);
    let served = chat
        .chain(embedding)
        .filter(|m| gateway.providers.get(m.provider()).is_some());
    gateway.health.report(served)
}

/// Breaker state, failure rate and latency EWMA of every served model.
pub async fn report(
    State(gateway): State<Arc<Gateway>>,
    _caller: Caller,
) -> Result<Json<Report>, GatewayError> {
    Ok(Json(snapshot(&gateway)))
}

/// The same, for Prometheus.
pub async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let mut text = snapshot(&gateway).to_prometheus();
    text.push_str(&format!(
        "# HELP modelrouter_tokenizer_loaded Whether the o200k tokenizer (about 70 MB) is loaded: at start with gateway.preload_tokenizer, else on first use.\n\
         # TYPE modelrouter_tokenizer_loaded gauge\nmodelrouter_tokenizer_loaded {}\n",
        u8::from(tokens::loaded())
    ));
    if let Some(beside) = gateway.metrics_beside.get() {
        text.push_str(&beside());
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::health::PROMETHEUS_TEXT),
    );
    response
}
