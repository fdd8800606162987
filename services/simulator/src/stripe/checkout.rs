//! The hosted Checkout page: shows what the session charges (or that it
//! saves a card), takes a card number, and pays, saves or declines by
//! Stripe's test card numbers; then it redirects to the session's
//! `success_url` and sends the events Stripe sends.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::{json, Value};

use super::objects::{self, IntentParts, TestCard};
use super::{new_id, now, webhooks};
use crate::Simulator;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

fn page_with(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{title} · Stripe (simulated)</title>\
<style>body{{font:15px system-ui,sans-serif;max-width:480px;margin:3rem auto;color:#1d2330}}\
table{{width:100%;border-collapse:collapse}}td{{padding:.3rem 0;border-bottom:1px solid #dde3ea}}\
.num{{text-align:right}}input{{font:inherit;width:100%;padding:.4rem;margin:.4rem 0}}\
button{{font:inherit;width:100%;padding:.5rem;background:#635bff;color:#fff;border:0;border-radius:6px}}\
.error{{color:#c0392b}}.muted{{color:#5f6b7a;font-size:.85rem}}</style></head><body>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

/// Why a Checkout page cannot be used.
enum Closed {
    Missing,
    Done,
}

impl Closed {
    fn page(self) -> Response {
        match self {
            Closed::Missing => page_with(
                StatusCode::NOT_FOUND,
                "Not found",
                "<h1>This payment page does not exist.</h1>",
            ),
            Closed::Done => page_with(
                StatusCode::GONE,
                "Closed",
                "<h1>This payment page is no longer open.</h1>",
            ),
        }
    }
}

/// The session `id` if its page is open.
fn open_session(store: &super::Store, id: &str) -> Result<Value, Closed> {
    let session = store.sessions.get(id).ok_or(Closed::Missing)?;
    if session["status"] != "open" {
        return Err(Closed::Done);
    }
    Ok(session.clone())
}

/// `GET /stripe/checkout/{id}`.
pub(super) async fn page(State(sim): State<Arc<Simulator>>, Path(id): Path<String>) -> Response {
    render(&sim, &id, StatusCode::OK, None)
}

fn render(sim: &Simulator, id: &str, status: StatusCode, problem: Option<&str>) -> Response {
    let store = sim.stripe.store();
    let session = match open_session(&store, id) {
        Ok(session) => session,
        Err(closed) => return closed.page(),
    };
    let request = store
        .session_requests
        .get(id)
        .cloned()
        .unwrap_or(Value::Null);
    let setup = session["mode"] == "setup";
    let mut items = String::new();
    for item in request["line_items"].as_array().into_iter().flatten() {
        let name = item["price_data"]["product_data"]["name"]
            .as_str()
            .unwrap_or("Item");
        let cents: i64 = item["price_data"]["unit_amount"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        items.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(name),
            dollars(cents)
        ));
    }
    let total = session["amount_total"].as_i64().unwrap_or(0);
    let heading = if setup {
        "<h1>Save a card</h1><p>It will be charged later, when your balance runs low. Nothing is charged now.</p>".to_owned()
    } else {
        format!(
            "<h1>Pay {}</h1><table id=\"items\">{items}<tr><td><b>Total</b></td><td class=\"num\" id=\"total\"><b>{}</b></td></tr></table>",
            dollars(total),
            dollars(total)
        )
    };
    let problem = problem
        .map(|p| format!("<p class=\"error\" id=\"card-error\">{}</p>", escape(p)))
        .unwrap_or_default();
    let button = if setup {
        "Save card".to_owned()
    } else {
        format!("Pay {}", dollars(total))
    };
    let cancel = session["cancel_url"]
        .as_str()
        .map(|u| format!("<p><a href=\"{}\">Cancel</a></p>", escape(u)))
        .unwrap_or_default();
    let body = format!(
        "{heading}{problem}<form method=\"post\"><label for=\"card\">Card number</label>\
<input id=\"card\" name=\"card\" inputmode=\"numeric\" autocomplete=\"cc-number\" required>\
<button type=\"submit\" id=\"submit\">{button}</button></form>{cancel}\
<p class=\"muted\">Simulated Stripe test mode. 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined; \
4000 0000 0000 9995 has insufficient funds; 4000 0000 0000 0341 saves but later charges are declined; \
4000 0000 0000 0259 pays and is then disputed.</p>"
    );
    page_with(status, if setup { "Save a card" } else { "Pay" }, &body)
}

#[derive(Deserialize)]
pub(super) struct PayForm {
    #[serde(default)]
    card: String,
}

/// `POST /stripe/checkout/{id}`: pays (or saves) with the card typed.
pub(super) async fn pay(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    Form(form): Form<PayForm>,
) -> Response {
    let Some(card) = TestCard::of(&form.card) else {
        return render(
            &sim,
            &id,
            StatusCode::BAD_REQUEST,
            Some("Your card number is invalid. Use a test card."),
        );
    };
    let outcome = {
        let mut store = sim.stripe.store();
        let session = match open_session(&store, &id) {
            Ok(session) => session,
            Err(closed) => return closed.page(),
        };
        let request = store
            .session_requests
            .get(&id)
            .cloned()
            .unwrap_or(Value::Null);
        let customer = session["customer"].as_str().map(str::to_owned);
        let method_id = new_id("pm");
        let method = objects::payment_method(&method_id, customer.as_deref(), &form.card, now());
        store.methods.push(method);
        store.cards.insert(method_id.clone(), form.card.clone());
        if session["mode"] == "setup" {
            if let Some((_, message)) = card.decline(true) {
                Err(message)
            } else {
                let intent_id = new_id("seti");
                let meta = request["setup_intent_data"]["metadata"].clone();
                let meta = if meta.is_object() { meta } else { json!({}) };
                let intent = objects::setup_intent(
                    &intent_id,
                    customer.as_deref(),
                    &method_id,
                    &meta,
                    now(),
                );
                store.setup_intents.push(intent.clone());
                let session = complete(&mut store, &id, |s| s["setup_intent"] = json!(intent_id));
                Ok((
                    vec![
                        ("setup_intent.succeeded", intent, None),
                        ("checkout.session.completed", session.clone(), None),
                    ],
                    session,
                ))
            }
        } else {
            let intent_id = new_id("pi");
            let meta = request["payment_intent_data"]["metadata"].clone();
            let meta = if meta.is_object() { meta } else { json!({}) };
            let description = request["payment_intent_data"]["description"]
                .as_str()
                .map(str::to_owned);
            let parts = IntentParts {
                id: &intent_id,
                amount: session["amount_total"].as_i64().unwrap_or(0),
                customer: customer.as_deref(),
                payment_method: Some(&method_id),
                metadata: &meta,
                description: description.as_deref(),
                created: now(),
            };
            let super::api::Confirmed {
                failure,
                mut events,
                ..
            } = super::api::confirm(&mut store, parts, false);
            match failure {
                Some(failure) => {
                    Err(failure["message"]
                        .as_str()
                        .map_or("Your card was declined.", |_| {
                            card.decline(false)
                                .map_or("Your card was declined.", |d| d.1)
                        }))
                }
                None => {
                    let session = complete(&mut store, &id, |s| {
                        s["payment_intent"] = json!(intent_id);
                        s["payment_status"] = json!("paid");
                    });
                    // Stripe sends the session's completion; a dispute of a
                    // disputed test card comes after it.
                    let dispute_at = events.iter().position(|e| e.0 == "charge.dispute.created");
                    let completed = ("checkout.session.completed", session.clone(), None);
                    match dispute_at {
                        Some(at) => events.insert(at, completed),
                        None => events.push(completed),
                    }
                    Ok((events, session))
                }
            }
        }
    };
    match outcome {
        Err(message) => render(&sim, &id, StatusCode::PAYMENT_REQUIRED, Some(message)),
        Ok((events, session)) => {
            webhooks::emit_all(&sim, events);
            let to = session["success_url"]
                .as_str()
                .unwrap_or("/")
                .replace("{CHECKOUT_SESSION_ID}", &id);
            Redirect::to(&to).into_response()
        }
    }
}

/// Marks the session complete (its page closes) after `update`; the session.
fn complete(store: &mut super::Store, id: &str, update: impl FnOnce(&mut Value)) -> Value {
    match store.sessions.get_mut(id) {
        Some(session) => {
            session["status"] = json!("complete");
            session["url"] = Value::Null;
            update(session);
            session.clone()
        }
        None => Value::Null,
    }
}
