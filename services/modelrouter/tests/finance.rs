//! The finance team's checks on a real `modelrouter up`, after what users
//! really do: the first account's traffic, a tenant with keys, a member
//! invited and removed, a provider blocked, a daily limit, deposits through
//! Checkout, a refund, a dispute won, a saved card and an auto-recharge.
//! `reconcile --stripe` must match every payment while it runs, `reconcile`
//! must be clean after it stops, and tampering with any one table of the
//! books must make `reconcile` fail and name it.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;
use test_support::dashboard::{Browser, PASSWORD};
use test_support::deployment::{temp_dir, up, Up};
use test_support::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");

/// Runs `modelrouter` with `args` on the data dir; success and output.
async fn run(data: &Path, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .env("MODELROUTER_DATA_DIR", data)
        .env_remove("MODELROUTER_CONFIG")
        .env_remove("STRIPE_SECRET_KEY")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("modelrouter runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

async fn chat(url: &str, key: &str, model: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn history_kinds(owner: &Browser) -> Vec<String> {
    let (_, billing) = owner.api(Method::GET, "/api/v1/billing", None).await;
    billing["history"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|h| h["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything a deployment's users do in a day, on `running`.
async fn a_day_of_use(running: &Up) -> Browser {
    let url = &running.url;
    let http = reqwest::Client::new();
    let operator = running.operator_key().expect("operator key printed");
    let first_key = running.printed_key.clone().expect("first account key");
    for _ in 0..10 {
        assert_eq!(chat(url, &first_key, "economy").await, 200);
    }

    let owner = Browser::new(url);
    owner.sign_up("owner@example.com", "Tenant").await;
    let key = owner.create_key("service").await;
    let (status, invited) = owner
        .api(
            Method::POST,
            "/api/v1/invitations",
            Some(json!({"email": "member@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, 201, "{invited}");
    let member = Browser::new(url);
    let joined = member
        .post(
            &format!("{}/signup", invited["invitation_path"].as_str().unwrap()),
            &[("password", PASSWORD)],
        )
        .await;
    assert_eq!(joined.status, 303);
    let member_key = member.create_key("mine").await;
    assert_eq!(chat(url, &member_key, "economy").await, 200);
    let (_, members) = owner.api(Method::GET, "/api/v1/members", None).await;
    let member_id = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "member@example.com")
        .and_then(|m| m["user"].as_str())
        .unwrap()
        .to_owned();
    let (status, _) = owner
        .api(
            Method::DELETE,
            &format!("/api/v1/members/{member_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = owner
        .api(
            Method::PUT,
            "/api/v1/providers/xai",
            Some(json!({"blocked": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = owner
        .api(
            Method::PUT,
            "/api/v1/limits",
            Some(json!({"daily_limit": "50"})),
        )
        .await;
    assert_eq!(status, 200);
    for model in ["economy", "standard", "premium", "economy"] {
        assert_eq!(chat(url, &key, model).await, 200);
    }

    // Money: a deposit, a refund of part of it, a second deposit disputed
    // and won, a saved card and one auto-recharge.
    let mut intents = Vec::new();
    for amount in ["10", "25"] {
        let session = owner.deposit(amount, "4242 4242 4242 4242").await;
        let stripe = format!("{url}/sim/stripe");
        let session =
            test_support::stripe::get(&stripe, &format!("checkout/sessions/{session}")).await;
        intents.push(session["payment_intent"].as_str().unwrap().to_owned());
    }
    let settled = eventually(Duration::from_secs(30), async || {
        history_kinds(&owner)
            .await
            .iter()
            .filter(|k| *k == "deposit")
            .count()
            == 2
    })
    .await;
    assert!(settled, "deposits settle");
    let refunded = http
        .post(format!("{url}/sim/stripe/v1/refunds"))
        .bearer_auth(simulator::stripe::SECRET_KEY)
        .form(&[("payment_intent", intents[0].as_str()), ("amount", "333")])
        .send()
        .await
        .unwrap();
    assert_eq!(refunded.status(), 200);
    let dispute: Value = http
        .post(format!("{url}/sim/_sim/stripe/disputes"))
        .bearer_auth(&operator)
        .json(&json!({"payment_intent": intents[1]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let disputed = eventually(Duration::from_secs(30), async || {
        history_kinds(&owner).await.iter().any(|k| k == "dispute")
    })
    .await;
    assert!(disputed, "the dispute is booked");
    let closed = http
        .post(format!(
            "{url}/sim/_sim/stripe/disputes/{}/close",
            dispute["id"].as_str().unwrap()
        ))
        .bearer_auth(&operator)
        .json(&json!({"status": "won"}))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    owner.save_card("5555 5555 5555 4444").await;
    let (status, _) = owner
        .api(
            Method::PUT,
            "/api/v1/billing/auto-recharge",
            Some(json!({"enabled": true, "threshold": "1000", "amount": "10"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(chat(url, &key, "premium").await, 200);
    let done = eventually(Duration::from_secs(30), async || {
        let kinds = history_kinds(&owner).await;
        kinds.iter().any(|k| k == "auto-recharge")
            && kinds.iter().any(|k| k == "dispute won")
            && kinds.iter().any(|k| k == "refund")
    })
    .await;
    assert!(done, "{:?}", history_kinds(&owner).await);
    // Off again, so no more recharges start while the books are checked.
    let (status, _) = owner
        .api(
            Method::PUT,
            "/api/v1/billing/auto-recharge",
            Some(json!({"enabled": false, "threshold": "1000", "amount": "10"})),
        )
        .await;
    assert_eq!(status, 200);
    owner
}

/// A reversible change to one table of the books, and what reconcile says.
struct Tamper {
    table: &'static str,
    change: &'static str,
    undo: &'static str,
}

const TAMPERS: &[Tamper] = &[
    Tamper {
        table: "balances",
        change: "UPDATE balances SET balance = balance + 1 WHERE rowid = (SELECT MIN(rowid) FROM balances)",
        undo: "UPDATE balances SET balance = balance - 1 WHERE rowid = (SELECT MIN(rowid) FROM balances)",
    },
    Tamper {
        table: "balances (version)",
        change: "UPDATE balances SET version = version + 1 WHERE rowid = (SELECT MAX(rowid) FROM balances)",
        undo: "UPDATE balances SET version = version - 1 WHERE rowid = (SELECT MAX(rowid) FROM balances)",
    },
    Tamper {
        table: "journal_posted (a deposit's, grant's or refund's line)",
        change: "UPDATE journal_posted SET credit = credit + 1 WHERE rowid = (SELECT MAX(rowid) FROM journal_posted WHERE credit > 0)",
        undo: "UPDATE journal_posted SET credit = credit - 1 WHERE rowid = (SELECT MAX(rowid) FROM journal_posted WHERE credit > 0)",
    },
    Tamper {
        table: "requests (a usage event's cost: its journal lines)",
        change: "UPDATE requests SET cost = cost + 1 WHERE rowid = (SELECT MAX(rowid) FROM requests WHERE cost > 0)",
        undo: "UPDATE requests SET cost = cost - 1 WHERE rowid = (SELECT MAX(rowid) FROM requests WHERE cost > 0)",
    },
    Tamper {
        table: "day_spend",
        change: "UPDATE day_spend SET spent = spent + 1 WHERE rowid = (SELECT MIN(rowid) FROM day_spend)",
        undo: "UPDATE day_spend SET spent = spent - 1 WHERE rowid = (SELECT MIN(rowid) FROM day_spend)",
    },
    Tamper {
        table: "applied_events",
        change: "UPDATE applied_events SET event_id = event_id || '-x' WHERE rowid = (SELECT MIN(rowid) FROM applied_events)",
        undo: "UPDATE applied_events SET event_id = substr(event_id, 1, length(event_id) - 2) WHERE rowid = (SELECT MIN(rowid) FROM applied_events)",
    },
    Tamper {
        table: "requests (a usage event's claim)",
        change: "UPDATE requests SET event_id = event_id || '-x' WHERE rowid = (SELECT MIN(rowid) FROM requests)",
        undo: "UPDATE requests SET event_id = substr(event_id, 1, length(event_id) - 2) WHERE rowid = (SELECT MIN(rowid) FROM requests)",
    },
    Tamper {
        table: "origin_instances",
        change: "UPDATE origin_instances SET events = events + 1 WHERE rowid = (SELECT MIN(rowid) FROM origin_instances)",
        undo: "UPDATE origin_instances SET events = events - 1 WHERE rowid = (SELECT MIN(rowid) FROM origin_instances)",
    },
    Tamper {
        table: "gateway_sequences",
        change: "UPDATE gateway_sequences SET events = events + 1 WHERE rowid = (SELECT MIN(rowid) FROM gateway_sequences)",
        undo: "UPDATE gateway_sequences SET events = events - 1 WHERE rowid = (SELECT MIN(rowid) FROM gateway_sequences)",
    },
    Tamper {
        table: "deposits",
        change: "UPDATE deposits SET credits = credits + 1 WHERE rowid = (SELECT MIN(rowid) FROM deposits)",
        undo: "UPDATE deposits SET credits = credits - 1 WHERE rowid = (SELECT MIN(rowid) FROM deposits)",
    },
    Tamper {
        table: "auto_recharge",
        change: "UPDATE auto_recharge SET threshold = threshold + 1",
        undo: "UPDATE auto_recharge SET threshold = threshold - 1",
    },
];

#[tokio::test]
async fn reconcile_is_right_on_a_real_deployment_and_catches_every_tampered_table() {
    let data = temp_dir("finance");
    let mut running = up(BIN, &data, &[("MODELROUTER_RECHARGE_RETRY_S", "0")]).await;
    let owner = a_day_of_use(&running).await;

    // While it runs: every card payment matches Stripe (the simulator's).
    let stripe = vec![
        (
            "STRIPE_SECRET_KEY",
            simulator::stripe::SECRET_KEY.to_owned(),
        ),
        ("STRIPE_API_BASE", format!("{}/sim/stripe", running.url)),
    ];
    let (ok, report) = run(&data, &["reconcile", "--stripe"], &stripe).await;
    assert!(ok, "{report}");
    assert!(
        report.contains("stripe: 3 payments match the books, 0 differ"),
        "{report}"
    );
    let (ok, report) = run(&data, &["reconcile", "--stripe"], &[]).await;
    assert!(!ok && report.contains("STRIPE_SECRET_KEY"), "{report}");
    let (_, billing) = owner.api(Method::GET, "/api/v1/billing", None).await;
    assert_eq!(billing["auto_recharge"]["charging"], false, "{billing}");

    test_support::deployment::terminate(&mut running.child).await;
    let (ok, report) = run(&data, &["reconcile"], &[]).await;
    assert!(ok, "{report}");
    assert!(
        report.contains("the ledger matches the event log"),
        "{report}"
    );

    let db = format!("sqlite://{}", data.join("ledger.db").display());
    for tamper in TAMPERS {
        let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
        let changed = sqlx::query(tamper.change).execute(&mut conn).await.unwrap();
        assert_eq!(
            changed.rows_affected(),
            1,
            "{} has a row to tamper with",
            tamper.table
        );
        let (ok, report) = run(&data, &["reconcile"], &[]).await;
        assert!(!ok, "tampered {} went unnoticed:\n{report}", tamper.table);
        sqlx::query(tamper.undo).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let (ok, report) = run(&data, &["reconcile"], &[]).await;
        assert!(ok, "after undoing {}: {report}", tamper.table);
    }
    std::fs::remove_dir_all(&data).ok();
}

/// `reconcile` on a deployment that is serving: the ledger folds a batch
/// at a time behind the log, so an audit that compared the store with the
/// whole log named every event not folded yet as a difference (a false
/// alarm within a second of any traffic). Run while requests keep coming,
/// it must be clean every time; tampering must still show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_on_a_busy_deployment_is_clean_and_still_catches_tampering() {
    let data = temp_dir("busy-reconcile");
    let mut running = up(BIN, &data, &[]).await;
    let key = running.printed_key.clone().expect("first account key");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (url, key, stop) = (running.url.clone(), key.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut served, mut failed) = (0u32, 0u32);
                for n in 0..20_000u32 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let model = if n % 2 == 0 { "economy" } else { "llama3.1-8b" };
                    match chat(&url, &key, model).await {
                        200 => served += 1,
                        _ => failed += 1,
                    }
                }
                (served, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 0..4 {
        let (ok, report) = run(&data, &["reconcile"], &[]).await;
        assert!(ok, "round {round}, while serving:\n{report}");
        assert!(
            report.contains("the ledger matches the event log"),
            "{report}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for task in traffic {
        let (ok, failed) = task.await.unwrap();
        assert_eq!(failed, 0, "every request is answered");
        served += ok;
    }
    assert!(served > 100, "only {served} requests while reconciling");

    // Still serving, the books tampered with: a folded balance moved.
    let db = format!("sqlite://{}", data.join("ledger.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    sqlx::query(
        "UPDATE balances SET balance = balance + 1 WHERE rowid = (SELECT MIN(rowid) FROM balances)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (ok, report) = run(&data, &["reconcile"], &[]).await;
    assert!(!ok && report.contains("account"), "{report}");
    sqlx::query(
        "UPDATE balances SET balance = balance - 1 WHERE rowid = (SELECT MIN(rowid) FROM balances)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    test_support::deployment::terminate(&mut running.child).await;
    let (ok, report) = run(&data, &["reconcile"], &[]).await;
    assert!(ok, "{report}");
    std::fs::remove_dir_all(&data).ok();
}
