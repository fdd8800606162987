//! Events and their delivery: each event is POSTed as JSON to every
//! registered endpoint with a `Stripe-Signature` header made as Stripe makes
//! it, and retried with growing waits while the endpoint does not answer
//! 2xx. Like Stripe, deliveries are concurrent and may arrive out of order.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{new_id, now};
use crate::Simulator;

/// The API version the events are written in.
pub const API_VERSION: &str = "2026-09-30.endive";

/// Where events go.
pub(super) struct Endpoint {
    pub url: String,
    pub secret: String,
}

/// One attempt to deliver one event.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub event: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub attempt: usize,
    /// The endpoint's answer; `None` when it could not be reached.
    pub status: Option<u16>,
    /// The event as sent, so a test can replay it.
    pub payload: String,
    /// Its `Stripe-Signature` header.
    pub signature: String,
}

/// Sends each `(type, object, previous attributes)` as an event.
pub(super) fn emit_all(sim: &Arc<Simulator>, events: super::Events) {
    for (kind, object, previous) in events {
        emit(sim, kind, object, previous);
    }
}

fn emit(sim: &Arc<Simulator>, kind: &str, object: Value, previous: Option<Value>) {
    let endpoints: Vec<(String, String)> = sim
        .stripe
        .endpoints
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|e| (e.url.clone(), e.secret.clone()))
        .collect();
    let mut data = json!({ "object": object });
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    let id = new_id("evt");
    let event = json!({
        "id": id, "object": "event", "api_version": API_VERSION, "created": now(),
        "data": data, "livemode": false, "pending_webhooks": endpoints.len(),
        "request": {"id": null, "idempotency_key": null}, "type": kind
    });
    let payload = event.to_string();
    for (url, secret) in endpoints {
        let sim = Arc::clone(sim);
        let (payload, id, kind) = (payload.clone(), id.clone(), kind.to_owned());
        tokio::spawn(async move { deliver(&sim, &url, &secret, &payload, &id, &kind).await });
    }
}

async fn deliver(sim: &Simulator, url: &str, secret: &str, payload: &str, id: &str, kind: &str) {
    let stripe = &sim.stripe;
    for attempt in 0..=stripe.retries.len() {
        if attempt > 0 {
            tokio::time::sleep(stripe.retries[attempt - 1]).await;
        }
        let signature = payments::signature::sign(payload.as_bytes(), secret, now());
        let sent = stripe
            .http
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", &signature)
            .body(payload.to_owned())
            .send()
            .await;
        let status = sent.as_ref().ok().map(|r| r.status().as_u16());
        stripe
            .deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Delivery {
                event: id.to_owned(),
                kind: kind.to_owned(),
                url: url.to_owned(),
                attempt: attempt + 1,
                status,
                payload: payload.to_owned(),
                signature: signature.clone(),
            });
        if status.is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        tracing::debug!(url, kind, ?status, "webhook not taken; retrying");
    }
}

/// `POST /_sim/stripe/webhook_endpoints`.
#[derive(Deserialize)]
pub(super) struct Register {
    url: String,
    secret: String,
}

pub(super) async fn register(
    State(sim): State<Arc<Simulator>>,
    Json(r): Json<Register>,
) -> StatusCode {
    sim.stripe.add_endpoint(&r.url, &r.secret);
    StatusCode::CREATED
}

/// `GET /_sim/stripe/deliveries`: every delivery attempt, oldest first.
pub(super) async fn deliveries(State(sim): State<Arc<Simulator>>) -> Json<Vec<Delivery>> {
    Json(
        sim.stripe
            .deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
    )
}
