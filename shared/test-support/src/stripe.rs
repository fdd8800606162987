//! Stripe as tests use it: the simulator's API (by the base URL the
//! clients are given, `…/stripe`) and its hosted Checkout page.

use serde_json::Value;

/// Submits the hosted Checkout page at `checkout_url` with `card`; the
/// page's status (303 when paid or saved, 402 when declined).
pub async fn pay(checkout_url: &str, card: &str) -> u16 {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(checkout_url)
        .form(&[("card", card)])
        .send()
        .await
        .expect("checkout page reachable")
        .status()
        .as_u16()
}

/// `GET {base}/v1/{path}` with the simulator's secret key, as JSON.
pub async fn get(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/v1/{path}"))
        .bearer_auth(simulator::stripe::SECRET_KEY)
        .send()
        .await
        .expect("simulated Stripe reachable")
        .json()
        .await
        .expect("JSON")
}

/// The PaymentIntents the ledger made for auto-recharges (not Checkout's).
pub async fn recharge_intents(base: &str) -> Vec<Value> {
    get(base, "payment_intents?limit=100").await["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|i| i["metadata"]["kind"] == "recharge")
        .cloned()
        .collect()
}
