//! Stripe's stand-in: the part of Stripe's API that card deposits use, in
//! memory, speaking Stripe's wire format (form-encoded requests with
//! bracketed keys, JSON objects as the API returns them, errors in Stripe's
//! envelope, idempotency keys, paged lists, signed webhooks delivered with
//! retries). Routes sit under `/stripe`: the API under `/stripe/v1/…` (so
//! an API base of `…/stripe` works for the official clients) and the hosted
//! Checkout page under `/stripe/checkout/{id}`, which pays or declines by
//! Stripe's test card numbers (see [`objects::TestCard`]).
//!
//! `localstripe` (PyPI) was the first candidate; it has no Checkout
//! Sessions, no disputes and no `charge.refunded` events, which every flow
//! here needs, so the simulator speaks this dialect itself.
//!
//! Simulator controls: `POST /_sim/stripe/webhook_endpoints` (`url`,
//! `secret`) registers where events go; `POST /_sim/stripe/disputes`
//! (`payment_intent`) opens a dispute and `POST
//! /_sim/stripe/disputes/{id}/close` (`status`: won or lost) closes it;
//! `GET /_sim/stripe/deliveries` lists webhook attempts; `POST
//! /_sim/stripe/latency` (`ms`) delays PaymentIntents' answers and events
//! (after charging); `GET /_sim/stripe/idempotency` counts replayed keys.

mod api;
mod checkout;
pub mod form;
pub mod objects;
mod webhooks;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub use webhooks::Delivery;

/// The secret key the simulated Stripe accepts by default.
pub const SECRET_KEY: &str = "sk_test_simulator";

/// Objects of one kind, in creation order (lists page newest first).
#[derive(Default)]
struct Kind(Vec<Value>);

impl Kind {
    fn get(&self, id: &str) -> Option<&Value> {
        self.0.iter().find(|o| o["id"] == id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|o| o["id"] == id)
    }

    fn push(&mut self, object: Value) -> Value {
        self.0.push(object.clone());
        object
    }
}

/// What Stripe keeps beyond the objects it shows.
#[derive(Default)]
struct Store {
    customers: Kind,
    sessions: Kind,
    intents: Kind,
    charges: Kind,
    setup_intents: Kind,
    methods: Kind,
    refunds: Kind,
    disputes: Kind,
    /// A session's `payment_intent_data` / `setup_intent_data` and line items.
    session_requests: HashMap<String, Value>,
    /// A PaymentMethod's card number (to know how its charges go).
    cards: HashMap<String, String>,
    /// Idempotency key → the response first given.
    idempotent: HashMap<String, (u16, Value)>,
    /// Idempotency key → how many times that response was given again.
    replays: std::collections::BTreeMap<String, u64>,
}

/// The simulated Stripe account.
pub struct Stripe {
    secret_key: String,
    store: Mutex<Store>,
    endpoints: Mutex<Vec<webhooks::Endpoint>>,
    deliveries: Mutex<Vec<Delivery>>,
    http: reqwest::Client,
    /// Waits before each retry of a failed webhook delivery.
    retries: Vec<Duration>,
    /// How long a PaymentIntent's creation takes to answer.
    intent_latency: Mutex<Duration>,
}

impl Default for Stripe {
    fn default() -> Self {
        Stripe::new(SECRET_KEY)
    }
}

impl Stripe {
    /// An empty account accepting `secret_key`.
    pub fn new(secret_key: &str) -> Stripe {
        Stripe {
            secret_key: secret_key.to_owned(),
            store: Mutex::default(),
            endpoints: Mutex::default(),
            deliveries: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            // Stripe retries for days; the stand-in, over a minute.
            retries: [1, 2, 4, 8, 15, 30]
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            intent_latency: Mutex::default(),
        }
    }

    fn intent_latency(&self) -> Duration {
        *self
            .intent_latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_intent_latency(&self, latency: Duration) {
        *self
            .intent_latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = latency;
    }

    /// Sends every later event to `url`, signed with `secret`.
    pub fn add_endpoint(&self, url: &str, secret: &str) {
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(webhooks::Endpoint {
                url: url.to_owned(),
                secret: secret.to_owned(),
            });
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `headers` carry the account's secret key (as Stripe takes it:
    /// a bearer token, or basic auth with the key as the user).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            return token.trim() == self.secret_key;
        }
        if let Some(basic) = value.strip_prefix("Basic ") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded);
            return text.split(':').next() == Some(self.secret_key.as_str());
        }
        false
    }
}

/// An error answer in Stripe's envelope.
pub(crate) struct Failure {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Events to send: (type, object, previous attributes).
type Events = Vec<(&'static str, Value, Option<Value>)>;

/// Stripe's error envelope.
fn error(status: StatusCode, kind: &str, message: &str, param: Option<&str>) -> Failure {
    Failure {
        status,
        body: json!({"error": {"type": kind, "message": message, "param": param,
                               "doc_url": "https://stripe.com/docs/api/errors"}}),
    }
}

fn not_found(kind: &str, id: &str) -> Failure {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        &format!("No such {kind}: '{id}'"),
        Some("id"),
    )
}

/// `unix seconds`, now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A new id with Stripe's prefix for the kind (`cus`, `cs_test`, `pi`, …).
fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let random = uuid::Uuid::new_v4().as_u128();
    let tail: String = (0..24)
        .map(|i| ALPHABET[((random >> (i * 5)) % 62) as usize] as char)
        .collect();
    format!("{prefix}_{tail}")
}

/// The routes under `/stripe`, and the controls under `/_sim/stripe`.
pub fn routes() -> Router<std::sync::Arc<crate::Simulator>> {
    Router::new()
        .route(
            "/stripe/v1/customers",
            post(api::create_customer).merge(api::list(|s| &s.customers, "/v1/customers")),
        )
        .route(
            "/stripe/v1/customers/{id}",
            api::retrieve(|s| &s.customers, "customer"),
        )
        .route(
            "/stripe/v1/checkout/sessions",
            post(api::create_session).merge(api::list(|s| &s.sessions, "/v1/checkout/sessions")),
        )
        .route(
            "/stripe/v1/checkout/sessions/{id}",
            api::retrieve(|s| &s.sessions, "checkout.session"),
        )
        .route(
            "/stripe/v1/payment_intents",
            post(api::create_intent).merge(api::list(|s| &s.intents, "/v1/payment_intents")),
        )
        .route(
            "/stripe/v1/payment_intents/{id}",
            api::retrieve(|s| &s.intents, "payment_intent"),
        )
        .route(
            "/stripe/v1/setup_intents/{id}",
            api::retrieve(|s| &s.setup_intents, "setup_intent"),
        )
        .route(
            "/stripe/v1/payment_methods/{id}",
            api::retrieve(|s| &s.methods, "payment_method"),
        )
        .route(
            "/stripe/v1/payment_methods/{id}/detach",
            post(api::detach_method),
        )
        .route(
            "/stripe/v1/charges/{id}",
            api::retrieve(|s| &s.charges, "charge"),
        )
        .route(
            "/stripe/v1/refunds",
            post(api::create_refund).merge(api::list(|s| &s.refunds, "/v1/refunds")),
        )
        .route(
            "/stripe/v1/disputes",
            api::list(|s| &s.disputes, "/v1/disputes"),
        )
        .route(
            "/stripe/v1/disputes/{id}",
            api::retrieve(|s| &s.disputes, "dispute"),
        )
        .route(
            "/stripe/checkout/{id}",
            get(checkout::page).post(checkout::pay),
        )
}

/// The simulator's controls for Stripe (under `/_sim`, guarded like the rest).
pub fn controls() -> Router<std::sync::Arc<crate::Simulator>> {
    Router::new()
        .route("/_sim/stripe/webhook_endpoints", post(webhooks::register))
        .route("/_sim/stripe/deliveries", get(webhooks::deliveries))
        .route("/_sim/stripe/disputes", post(api::open_dispute))
        .route("/_sim/stripe/disputes/{id}/close", post(api::close_dispute))
        .route("/_sim/stripe/latency", post(api::set_latency))
        .route("/_sim/stripe/idempotency", get(api::replays))
}
