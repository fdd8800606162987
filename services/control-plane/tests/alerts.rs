//! Alerts end to end: rules saved on the admin API, spend that crosses the
//! daily limit, a key budget and the balance floor fires each once, and a
//! webhook that fails at first gets every alert, signed, on a retry; a
//! declined auto-recharge fires too. The webhook is a real HTTP server on
//! 127.0.0.1, started here.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use events::{Envelope, Event, RechargeDeclined};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Stack};

/// What the webhook received: (signature header, body), and how many
/// requests it refused first.
#[derive(Default)]
struct Hook {
    received: Vec<(String, Vec<u8>)>,
    refuse: usize,
}

async fn webhook(hook: Arc<Mutex<Hook>>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let hook = Arc::clone(&hook);
            async move {
                let mut hook = hook.lock().unwrap();
                if hook.refuse > 0 {
                    hook.refuse -= 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let signature = headers
                    .get("model-router-signature")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                hook.received.push((signature, body.to_vec()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Checks `t=…,v1=…` over `body` under `secret`, as a receiver would.
fn verify(secret: &str, signature: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(v1).unwrap_or_default())
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn crossings_fire_once_and_reach_a_flaky_webhook_signed() {
    let hook = Arc::new(Mutex::new(Hook {
        refuse: 1,
        ..Hook::default()
    }));
    let url = webhook(Arc::clone(&hook)).await;
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let b = stack.browser();
    b.sign_up("alerts@example.com", "Alerted").await;
    let key = b.create_key("watched").await;
    let (_, keys) = b.api(Method::GET, "/api/v1/keys", None).await;
    let key_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();

    // Bad rules name their field.
    for (rules, param) in [
        (json!({"daily_limit_percents": [0]}), "daily_limit_percents"),
        (
            json!({"key_budget_percents": "80, lots"}),
            "key_budget_percents",
        ),
        (json!({"balance_below": "a lot"}), "balance_below"),
        (
            json!({"webhook_url": "ftp://hooks.example.com"}),
            "webhook_url",
        ),
        (
            json!({"webhook_url": "http://169.254.169.254/latest"}),
            "webhook_url",
        ),
        (json!({"emails": ["not-an-address"]}), "emails"),
    ] {
        let (status, error) = b
            .api(Method::PUT, "/api/v1/alerts", Some(rules.clone()))
            .await;
        assert_eq!(status, 400, "{rules}: {error}");
        assert_eq!(error["error"]["param"], param, "{rules}: {error}");
    }
    let (status, saved) = b
        .api(
            Method::PUT,
            "/api/v1/alerts",
            Some(json!({
                "daily_limit_percents": "50, 100", "key_budget_percents": [80],
                "balance_below": "1000", "recharge_failed": true,
                "webhook_url": url, "emails": "ops@example.com"
            })),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let secret = saved["rules"]["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    // Saving again keeps the secret receivers verify with.
    let (_, again) = b.api(Method::GET, "/api/v1/alerts", None).await;
    assert_eq!(again["rules"]["webhook_secret"], secret.as_str());

    b.api(
        Method::PUT,
        "/api/v1/limits",
        Some(json!({"daily_limit": "0.000002"})),
    )
    .await;
    b.api(
        Method::PUT,
        &format!("/api/v1/keys/{key_id}/limits"),
        Some(json!({"budget": "0.000001", "budget_period": "daily"})),
    )
    .await;
    // A paid tier: one request costs more than both limits (the sign-up
    // credits reach the gateway a moment after sign-up).
    let mut paid = false;
    for _ in 0..200 {
        if stack.chat(&key, "premium").await.status() == 200 {
            paid = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(paid, "a paid request is served");

    let kinds = || -> BTreeSet<String> {
        hook.lock()
            .unwrap()
            .received
            .iter()
            .map(|(_, body)| {
                serde_json::from_slice::<Value>(body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let expected: BTreeSet<String> = ["daily_limit", "key_budget", "balance_low"]
        .map(String::from)
        .into();
    for _ in 0..300 {
        if kinds() == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        kinds(),
        expected,
        "each crossing reaches the webhook after its first refusal"
    );
    for (signature, body) in &hook.lock().unwrap().received {
        assert!(verify(&secret, signature, body), "signed: {signature}");
        assert!(!verify("whsec_wrong", signature, body));
    }

    // Listed with their deliveries; email without SMTP says so, at once.
    let (_, listed) = b.api(Method::GET, "/api/v1/alerts", None).await;
    let alerts = listed["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3, "{listed}");
    for alert in alerts {
        let deliveries = alert["deliveries"].to_string();
        assert!(
            deliveries.contains("webhook") && deliveries.contains(": delivered"),
            "{deliveries}"
        );
        assert!(
            deliveries.contains("failed (no SMTP server is configured"),
            "{deliveries}"
        );
    }
    let daily = alerts.iter().find(|a| a["kind"] == "daily_limit").unwrap();
    assert!(
        daily["message"].as_str().unwrap().contains("100%"),
        "{daily}"
    );
    // The dashboard shows them.
    let dashboard = b.get("/dashboard").await.body;
    assert!(dashboard.contains("id=\"alerts\"") && dashboard.contains("daily limit"));
    let page = b.get("/alerts").await.body;
    assert!(page.contains(&secret) && page.contains("id=\"alert-list\""));

    // More spend crosses nothing new.
    stack.chat(&key, "economy").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, listed) = b.api(Method::GET, "/api/v1/alerts", None).await;
    assert_eq!(listed["alerts"].as_array().unwrap().len(), 3);

    // A declined auto-recharge fires once, however often it is reported.
    let account = b.account().await;
    let declined = Event::RechargeDeclined(RechargeDeclined {
        account,
        recharge: uuid::Uuid::new_v4(),
        payment_intent: None,
        code: "card_declined".into(),
        message: "Your card was declined.".into(),
        retry_at: None,
    });
    for _ in 0..2 {
        let envelope = Envelope::new(declined.clone());
        stack
            .backends
            .log
            .append(
                envelope.event.subject(),
                &envelope.id.to_string(),
                &envelope.encode(),
            )
            .await
            .unwrap();
    }
    let mut kinds_now = BTreeSet::new();
    for _ in 0..200 {
        kinds_now = kinds();
        if kinds_now.contains("recharge_failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kinds_now.contains("recharge_failed"), "{kinds_now:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, listed) = b.api(Method::GET, "/api/v1/alerts", None).await;
    let recharges = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "recharge_failed")
        .count();
    assert_eq!(recharges, 1);
    stack.stop().await;
}
