//! The API endpoints of the simulated Stripe.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::objects::{self, IntentParts, SessionParts, TestCard};
use super::{error, new_id, not_found, now, webhooks, Events, Failure, Store};
use crate::Simulator;

type Reply = Response;

/// Checks the key, reads the form, and answers an idempotency key's repeat
/// with the response it first got (as Stripe does for 24 hours).
fn handle(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &[u8],
    f: impl FnOnce(&mut Store, &Value) -> Result<(StatusCode, Value), Failure>,
) -> Reply {
    let stripe = &sim.stripe;
    if !stripe.authorized(headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided.",
            None,
        )
        .into_response();
    }
    let params = match super::form::parse(body) {
        Ok(p) => p,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", &e, None)
                .into_response()
        }
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut store = stripe.store();
    if let Some((status, body)) = key.as_ref().and_then(|k| store.idempotent.get(k)).cloned() {
        if let Some(key) = &key {
            *store.replays.entry(key.clone()).or_default() += 1;
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
        return response;
    }
    let (status, value) = match f(&mut store, &params) {
        Ok(done) => done,
        Err(failure) => return failure.into_response(),
    };
    if let Some(key) = key {
        store
            .idempotent
            .insert(key, (status.as_u16(), value.clone()));
    }
    (status, Json(value)).into_response()
}

fn read(sim: &Simulator, headers: &HeaderMap, f: impl FnOnce(&Store) -> Reply) -> Reply {
    if !sim.stripe.authorized(headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided.",
            None,
        )
        .into_response();
    }
    f(&sim.stripe.store())
}

/// The object of `kind` with `id`, as JSON, or Stripe's 404.
fn found(object: Option<&Value>, kind: &str, id: &str) -> Reply {
    match object {
        Some(o) => Json(o.clone()).into_response(),
        None => not_found(kind, id).into_response(),
    }
}

fn missing(param: &str) -> Failure {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        &format!("Missing required param: {param}."),
        Some(param),
    )
}

fn text<'a>(params: &'a Value, name: &str) -> Option<&'a str> {
    params[name].as_str().filter(|s| !s.is_empty())
}

fn integer(params: &Value, name: &str) -> Result<Option<i64>, Failure> {
    match params[name].as_str() {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("Invalid integer: {v}"),
                Some(name),
            )
        }),
    }
}

fn metadata(params: &Value) -> Value {
    match &params["metadata"] {
        Value::Object(map) => Value::Object(map.clone()),
        _ => json!({}),
    }
}

pub(super) async fn create_customer(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    handle(&sim, &headers, &body, |store, params| {
        let customer = objects::customer(
            &new_id("cus"),
            text(params, "email"),
            &metadata(params),
            now(),
        );
        Ok((StatusCode::OK, store.customers.push(customer)))
    })
}

/// Where the hosted page of a session is: this simulator, as the caller reached it.
fn page_url(headers: &HeaderMap, uri: &OriginalUri, id: &str) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let path = uri.0.path();
    let prefix = path.split("/stripe/v1/").next().unwrap_or("");
    format!("http://{host}{prefix}/stripe/checkout/{id}")
}

pub(super) async fn create_session(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    uri: OriginalUri,
    body: Bytes,
) -> Reply {
    let headers_for_url = headers.clone();
    handle(&sim, &headers, &body, |store, params| {
        let mode = text(params, "mode").ok_or_else(|| missing("mode"))?;
        if !matches!(mode, "payment" | "setup") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("Invalid mode: {mode} (the simulator offers payment and setup)"),
                Some("mode"),
            ));
        }
        let success_url = text(params, "success_url").ok_or_else(|| missing("success_url"))?;
        let customer = text(params, "customer");
        if let Some(customer) = customer {
            if store.customers.get(customer).is_none() {
                return Err(not_found("customer", customer));
            }
        }
        let amount_total = if mode == "payment" {
            let items = params["line_items"]
                .as_array()
                .filter(|i| !i.is_empty())
                .ok_or_else(|| missing("line_items"))?;
            let mut total = 0i64;
            for item in items {
                let price = &item["price_data"];
                if price["currency"].as_str() != Some("usd") {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "The simulator charges in usd only.",
                        Some("line_items[0][price_data][currency]"),
                    ));
                }
                let unit: i64 = price["unit_amount"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| missing("line_items[0][price_data][unit_amount]"))?;
                let quantity: i64 = item["quantity"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                total += unit * quantity;
            }
            if total < 50 {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "The Checkout Session's total amount due must add up to at least $0.50 usd",
                    None,
                ));
            }
            Some(total)
        } else {
            None
        };
        let id = new_id("cs_test");
        let url = page_url(&headers_for_url, &uri, &id);
        let session = objects::checkout_session(SessionParts {
            id: &id,
            mode,
            customer,
            client_reference_id: text(params, "client_reference_id"),
            metadata: &metadata(params),
            amount_total,
            success_url: Some(success_url),
            cancel_url: text(params, "cancel_url"),
            url: &url,
            created: now(),
        });
        store.session_requests.insert(id.clone(), params.clone());
        Ok((StatusCode::OK, store.sessions.push(session)))
    })
}

#[derive(Deserialize)]
pub(super) struct Page {
    limit: Option<usize>,
    starting_after: Option<String>,
}

/// A page of `objects`, newest first, after `starting_after`.
fn page(objects: &[Value], page: &Page, url: &str) -> Reply {
    let limit = page.limit.unwrap_or(10).clamp(1, 100);
    let newest_first = objects.iter().rev();
    let mut rest: Vec<&Value> = match &page.starting_after {
        Some(after) => newest_first
            .skip_while(|o| o["id"] != *after)
            .skip(1)
            .collect(),
        None => newest_first.collect(),
    };
    let has_more = rest.len() > limit;
    rest.truncate(limit);
    Json(objects::list(
        url,
        rest.into_iter().cloned().collect(),
        has_more,
    ))
    .into_response()
}

/// `GET` of one object of a kind by its id (404 in Stripe's envelope, named
/// `object`, when there is none).
pub(super) fn retrieve(
    kind: fn(&Store) -> &super::Kind,
    object: &'static str,
) -> axum::routing::MethodRouter<Arc<Simulator>> {
    axum::routing::get(
        move |State(sim): State<Arc<Simulator>>, headers: HeaderMap, Path(id): Path<String>| async move {
            read(&sim, &headers, |store| {
                found(kind(store).get(&id), object, &id)
            })
        },
    )
}

/// `GET` of a list: the objects of one kind, paged as Stripe pages them.
pub(super) fn list(
    kind: fn(&Store) -> &super::Kind,
    url: &'static str,
) -> axum::routing::MethodRouter<Arc<Simulator>> {
    axum::routing::get(
        move |State(sim): State<Arc<Simulator>>, headers: HeaderMap, Query(p): Query<Page>| async move {
            read(&sim, &headers, |store| page(&kind(store).0, &p, url))
        },
    )
}

/// A PaymentIntent confirmed now with the card `payment_method`: paid (with
/// its charge) or declined; the events to send.
pub(super) fn confirm(store: &mut Store, parts: IntentParts<'_>, saving: bool) -> Confirmed {
    let card = parts
        .payment_method
        .and_then(|m| store.cards.get(m))
        .and_then(|n| TestCard::of(n))
        .unwrap_or(TestCard::Succeeds);
    let created = now();
    if let Some((code, message)) = card.decline(saving) {
        let failure = objects::card_error(code, message, parts.payment_method);
        let intent = objects::payment_intent(
            parts,
            "requires_payment_method",
            None,
            Some(failure.clone()),
        );
        store.intents.push(intent.clone());
        let events = vec![("payment_intent.payment_failed", intent.clone(), None)];
        return Confirmed {
            intent,
            failure: Some(failure),
            events,
        };
    }
    let charge_id = new_id("ch");
    let charge = objects::charge(&charge_id, &parts, created);
    let intent = objects::payment_intent(parts, "succeeded", Some(&charge_id), None);
    store.charges.push(charge.clone());
    store.intents.push(intent.clone());
    let mut events = vec![
        ("charge.succeeded", charge.clone(), None),
        ("payment_intent.succeeded", intent.clone(), None),
    ];
    if card == TestCard::Disputed {
        events.extend(open_dispute_on(store, &charge_id));
    }
    Confirmed {
        intent,
        failure: None,
        events,
    }
}

/// A PaymentIntent confirmed: the intent, its card error when declined, and
/// the events to send.
pub(super) struct Confirmed {
    pub intent: Value,
    pub failure: Option<Value>,
    pub events: Events,
}

pub(super) async fn create_intent(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut to_send = Vec::new();
    let response = handle(&sim, &headers, &body, |store, params| {
        let amount = integer(params, "amount")?.ok_or_else(|| missing("amount"))?;
        if amount < 50 {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Amount must be at least $0.50 usd",
                Some("amount"),
            ));
        }
        if text(params, "currency") != Some("usd") {
            return Err(missing("currency"));
        }
        let customer = text(params, "customer");
        let method = text(params, "payment_method");
        if let Some(method) = method {
            let found = store
                .methods
                .get(method)
                .ok_or_else(|| not_found("payment_method", method))?;
            if customer.is_some() && found["customer"].as_str() != customer {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "The provided PaymentMethod does not belong to this customer (was it detached?).",
                    Some("payment_method"),
                ));
            }
        }
        let id = new_id("pi");
        let metadata = metadata(params);
        let parts = IntentParts {
            id: &id,
            amount,
            customer,
            payment_method: method,
            metadata: &metadata,
            description: text(params, "description"),
            created: now(),
        };
        if text(params, "confirm") != Some("true") || method.is_none() {
            let intent = objects::payment_intent(parts, "requires_payment_method", None, None);
            return Ok((StatusCode::OK, store.intents.push(intent)));
        }
        let Confirmed {
            intent,
            failure,
            events,
        } = confirm(store, parts, false);
        to_send = events;
        match failure {
            Some(mut failure) => {
                failure["payment_intent"] = intent;
                Ok((StatusCode::PAYMENT_REQUIRED, json!({ "error": failure })))
            }
            None => Ok((StatusCode::OK, intent)),
        }
    });
    // The charge is made; its answer and its events may be slow to come (a
    // test kills the caller meanwhile to show a retried charge is the same
    // charge). The events go out even if the caller is gone.
    let delay = sim.stripe.intent_latency();
    if delay.is_zero() {
        webhooks::emit_all(&sim, to_send);
    } else {
        let later = Arc::clone(&sim);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            webhooks::emit_all(&later, to_send);
        });
        tokio::time::sleep(delay).await;
    }
    response
}

pub(super) async fn detach_method(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    handle(&sim, &headers, &body, |store, _| {
        let method = store
            .methods
            .get_mut(&id)
            .ok_or_else(|| not_found("payment_method", &id))?;
        method["customer"] = Value::Null;
        Ok((StatusCode::OK, method.clone()))
    })
}

pub(super) async fn create_refund(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut to_send = Vec::new();
    let response = handle(&sim, &headers, &body, |store, params| {
        let charge_id = match (text(params, "charge"), text(params, "payment_intent")) {
            (Some(charge), _) => charge.to_owned(),
            (None, Some(intent)) => store
                .intents
                .get(intent)
                .and_then(|i| i["latest_charge"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| not_found("payment_intent", intent))?,
            (None, None) => return Err(missing("charge")),
        };
        let charge = store
            .charges
            .get_mut(&charge_id)
            .ok_or_else(|| not_found("charge", &charge_id))?;
        let total = charge["amount"].as_i64().unwrap_or(0);
        let before = charge["amount_refunded"].as_i64().unwrap_or(0);
        let amount = integer(params, "amount")?.unwrap_or(total - before);
        if amount <= 0 || before + amount > total {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!(
                    "Refund amount (${}.{:02}) is greater than unrefunded amount on charge (${}.{:02})",
                    amount / 100,
                    amount % 100,
                    (total - before) / 100,
                    (total - before) % 100
                ),
                Some("amount"),
            ));
        }
        let was_refunded = charge["refunded"].clone();
        charge["amount_refunded"] = json!(before + amount);
        charge["refunded"] = json!(before + amount == total);
        let intent = charge["payment_intent"].as_str().map(str::to_owned);
        let charge = charge.clone();
        let refund = objects::refund(&new_id("re"), &charge_id, intent.as_deref(), amount, now());
        store.refunds.push(refund.clone());
        to_send = vec![
            ("refund.created", refund.clone(), None),
            (
                "charge.refunded",
                charge,
                Some(json!({"amount_refunded": before, "refunded": was_refunded})),
            ),
        ];
        Ok((StatusCode::OK, refund))
    });
    webhooks::emit_all(&sim, to_send);
    response
}

/// Opens a dispute on `charge` (as a card holder's bank would).
fn open_dispute_on(
    store: &mut Store,
    charge_id: &str,
) -> Vec<(&'static str, Value, Option<Value>)> {
    let Some(charge) = store.charges.get_mut(charge_id) else {
        return Vec::new();
    };
    charge["disputed"] = json!(true);
    let amount = charge["amount"].as_i64().unwrap_or(0);
    let intent = charge["payment_intent"].as_str().map(str::to_owned);
    let dispute = objects::dispute(&new_id("dp"), charge_id, intent.as_deref(), amount, now());
    store.disputes.push(dispute.clone());
    vec![("charge.dispute.created", dispute, None)]
}

#[derive(Deserialize)]
pub(super) struct DisputeRequest {
    payment_intent: String,
}

/// `POST /_sim/stripe/disputes`: the card holder disputes a payment.
pub(super) async fn open_dispute(
    State(sim): State<Arc<Simulator>>,
    Json(request): Json<DisputeRequest>,
) -> Reply {
    let events = {
        let mut store = sim.stripe.store();
        let Some(charge) = store
            .intents
            .get(&request.payment_intent)
            .and_then(|i| i["latest_charge"].as_str())
            .map(str::to_owned)
        else {
            return not_found("payment_intent", &request.payment_intent).into_response();
        };
        open_dispute_on(&mut store, &charge)
    };
    let dispute = events.first().map(|e| e.1.clone()).unwrap_or(Value::Null);
    webhooks::emit_all(&sim, events);
    Json(dispute).into_response()
}

#[derive(Deserialize)]
pub(super) struct CloseRequest {
    status: String,
}

/// `POST /_sim/stripe/disputes/{id}/close`: the bank decides (`won` or `lost`).
pub(super) async fn close_dispute(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    Json(request): Json<CloseRequest>,
) -> Reply {
    if !matches!(request.status.as_str(), "won" | "lost") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "status must be won or lost",
            Some("status"),
        )
        .into_response();
    }
    let dispute = {
        let mut store = sim.stripe.store();
        let Some(dispute) = store.disputes.get_mut(&id) else {
            return not_found("dispute", &id).into_response();
        };
        dispute["status"] = json!(request.status);
        dispute.clone()
    };
    webhooks::emit_all(&sim, vec![("charge.dispute.closed", dispute.clone(), None)]);
    Json(dispute).into_response()
}

#[derive(Deserialize)]
pub(super) struct Latency {
    ms: u64,
}

/// `POST /_sim/stripe/latency`: how long creating a PaymentIntent takes to
/// answer (after the charge is made).
pub(super) async fn set_latency(
    State(sim): State<Arc<Simulator>>,
    Json(latency): Json<Latency>,
) -> StatusCode {
    sim.stripe
        .set_intent_latency(Duration::from_millis(latency.ms));
    StatusCode::NO_CONTENT
}

/// `GET /_sim/stripe/idempotency`: each idempotency key answered again from
/// its first response, and how many times.
pub(super) async fn replays(State(sim): State<Arc<Simulator>>) -> Json<Value> {
    Json(json!(sim.stripe.store().replays))
}
