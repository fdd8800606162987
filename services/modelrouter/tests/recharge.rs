//! Auto-recharge across processes: a control plane, a ledger and two
//! gateways on NATS and PostgreSQL, Stripe played by the simulator process.
//! The account crosses its threshold again and again through both gateways
//! at once, and each time the ledger is killed with SIGKILL at a different
//! moment, once while Stripe is still answering its charge. Every crossing
//! must charge the card exactly once and credit it exactly once, and
//! `reconcile` must find the books clean.

use std::time::Duration;

use money::Money;
use reqwest::Method;
use serde_json::{json, Value};
use test_support::backends::{TestDb, NATS_URL};
use test_support::dashboard::{Browser, KEY_HASH_SECRET, SESSION_SECRET};
use test_support::deployment::{kill9, url_in, Deployment};
use test_support::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");
const WEBHOOK_SECRET: &str = "whsec_recharge_test";

/// Stripe (the simulator's) for a process of the deployment.
fn stripe_env(sim: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "STRIPE_SECRET_KEY",
            simulator::stripe::SECRET_KEY.to_owned(),
        ),
        ("STRIPE_API_BASE", format!("{sim}/stripe")),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("MODELROUTER_RECHARGE_RETRY_S", "0".to_owned()),
        ("MODELROUTER_KEY_HASH_SECRET", KEY_HASH_SECRET.to_owned()),
    ]
}

async fn balance(browser: &Browser) -> Money {
    let (_, credits) = browser.api(Method::GET, "/api/v1/credits", None).await;
    credits["balance"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no balance in {credits}"))
}

#[tokio::test]
async fn each_crossing_charges_once_while_the_ledger_is_killed() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let (_sim, sim) = deployment.simulator().await;
    let stripe = stripe_env(&sim);
    let ledger_command = || {
        let mut command = deployment.command(&["ledger"], "ledger");
        command.envs(stripe.iter().map(|(k, v)| (*k, v.as_str())));
        command
    };
    let (mut ledger, _) = deployment.start(ledger_command(), "ledger").await;
    let mut cp_command = deployment.command(&["control-plane"], "cp");
    cp_command
        .env("MODELROUTER_LISTEN", "127.0.0.1:0")
        .env("MODELROUTER_SESSION_SECRET", SESSION_SECRET)
        .env("MODELROUTER_DEMO_CREDITS", "0")
        .envs(stripe.iter().map(|(k, v)| (*k, v.as_str())));
    let (_cp, line) = deployment.start(cp_command, "listening").await;
    let cp = url_in(&line);
    let http = reqwest::Client::new();
    let registered = http
        .post(format!("{sim}/_sim/stripe/webhook_endpoints"))
        .json(&json!({"url": format!("{cp}/stripe/webhook"), "secret": WEBHOOK_SECRET}))
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success());
    let gateways = deployment
        .gateways(
            &["gw-a", "gw-b"],
            &sim,
            &[("MODELROUTER_KEY_HASH_SECRET", KEY_HASH_SECRET)],
        )
        .await;

    // An owner deposits $10, saves a card and turns auto-recharge on.
    let owner = Browser::new(&cp);
    owner.sign_up("finance@example.com", "Finance").await;
    owner.deposit("10", "4242424242424242").await;
    owner.save_card("4242424242424242").await;
    let ready = eventually(Duration::from_secs(30), async || {
        let (_, billing) = owner.api(Method::GET, "/api/v1/billing", None).await;
        billing["auto_recharge"]["card"].is_string() && billing["balance"] == "10"
    })
    .await;
    assert!(ready, "deposit and card never arrived");
    let (_, created) = owner
        .api(Method::POST, "/api/v1/keys", Some(json!({"name": "load"})))
        .await;
    let key = created["key"].as_str().unwrap().to_owned();
    for (_, url) in &gateways {
        let served = eventually(Duration::from_secs(10), async || {
            chat(&http, url, &key).await == 200
        })
        .await;
        assert!(served, "{url} never served the new key");
    }

    // Five crossings; the ledger dies at a different moment around each.
    // At the third, Stripe charges at once but answers (and sends its
    // events) 5 s later: the ledger dies waiting, and its successor sends
    // the same charge again.
    let kills_after_ms = [0_u64, 40, 600, 150, 300];
    for (crossing, kill_after) in kills_after_ms.iter().enumerate() {
        let slow = crossing == 2;
        set_latency(&http, &sim, if slow { 5000 } else { 0 }).await;
        let now = balance(&owner).await;
        let threshold = format!("{}", now.nanos() / 1_000_000_000 + 1);
        let (status, set) = owner
            .api(
                Method::PUT,
                "/api/v1/billing/auto-recharge",
                Some(json!({"enabled": true, "threshold": threshold, "amount": "10"})),
            )
            .await;
        assert_eq!(status, 200, "{set}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let load = (0..6).map(|n| chat(&http, &gateways[n % 2].1, &key));
        let statuses = futures_util::future::join_all(load).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(*kill_after)).await;
        kill9(&mut ledger).await;
        ledger = deployment.start(ledger_command(), "ledger").await.0;
        let paid = eventually(Duration::from_secs(60), async || {
            test_support::stripe::recharge_intents(&format!("{sim}/stripe"))
                .await
                .len()
                > crossing
                && balance(&owner).await > now + Money::from_nanos(9 * 1_000_000_000)
        })
        .await;
        assert!(paid, "crossing {crossing} was never recharged");
    }
    set_latency(&http, &sim, 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let intents = test_support::stripe::recharge_intents(&format!("{sim}/stripe")).await;
    assert_eq!(intents.len(), 5, "one charge per crossing: {intents:#?}");
    assert!(intents
        .iter()
        .all(|i| i["status"] == "succeeded" && i["amount"] == 1040));
    let replays: Value = http
        .get(format!("{sim}/_sim/stripe/idempotency"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!("charges sent again with their idempotency key: {replays}");
    let replayed = replays.as_object().map_or(0, |keys| {
        keys.values().filter(|n| n.as_u64() > Some(0)).count()
    });
    assert!(
        replayed >= 1,
        "the charge the killed ledger waited on was sent again: {replays}"
    );
    let (_, billing) = owner.api(Method::GET, "/api/v1/billing", None).await;
    let recharges = billing["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "auto-recharge")
        .count();
    assert_eq!(recharges, 5, "each charge credited once: {billing}");
    let (ok, report) = deployment.run(&["reconcile"]).await;
    assert!(ok, "{report}");
}

async fn set_latency(http: &reqwest::Client, sim: &str, ms: u64) {
    let set = http
        .post(format!("{sim}/_sim/stripe/latency"))
        .json(&json!({ "ms": ms }))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
}

async fn chat(http: &reqwest::Client, url: &str, key: &str) -> u16 {
    http.post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}
