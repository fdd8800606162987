//! The distributed deployment as separate processes: a simulator, a ledger
//! and two gateways on the machine's NATS (a unique prefix) and a fresh
//! PostgreSQL database, sharing one account's daily limit; then
//! `reconcile` and `ledger export` as an operator would run them.

use std::time::Duration;

use events::{AccountId, DailyLimitSet, Envelope, Event};
use money::Money;
use test_support::backends::{TestDb, NATS_URL};
use test_support::deployment::{chat, Deployment};

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");

#[tokio::test]
async fn two_gateway_processes_share_a_daily_limit_and_the_books_reconcile() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let (_sim, sim) = deployment.simulator().await;
    let (_ledger, ledger_url) = deployment.ledger_probed().await;
    // `modelrouter gateway` keys belong to the nil account.
    let account = AccountId(uuid::Uuid::nil());
    let (ok, text) = deployment
        .run(&["grant", "--account", &account.to_string(), "--amount", "10"])
        .await;
    assert!(ok, "{text}");
    let limit: Money = "0.01".parse().unwrap();
    let log = eventlog::nats::NatsLog::connect(NATS_URL, &deployment.prefix)
        .await
        .unwrap();
    let envelope = Envelope::new(Event::DailyLimitSet(DailyLimitSet {
        account,
        limit: Some(limit),
    }));
    eventlog::EventLog::append(
        &log,
        envelope.event.subject(),
        &envelope.id.to_string(),
        &envelope.encode(),
    )
    .await
    .unwrap();

    let gateways = deployment.gateways(&["gw-1", "gw-2"], &sim, &[]).await;
    let http = reqwest::Client::new();
    // Wait until both gateways see the credit (bounded).
    for (_, url) in &gateways {
        let mut served = false;
        for _ in 0..300 {
            if chat(&http, url, 0).await.0 == 200 {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "{url} never saw the account's credit");
    }
    let until_refused = |url: String| {
        let http = http.clone();
        async move {
            let mut spent = Money::ZERO;
            for n in 1..2_000 {
                match chat(&http, &url, n).await {
                    (200, Some(cost)) => spent += cost,
                    (429, _) => return spent,
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            panic!("{url} never refused");
        }
    };
    // An operator reconciling while both gateways serve: the ledger folds
    // behind the log, which is not a difference.
    let (a, b, (reconciled, report)) = tokio::join!(
        until_refused(gateways[0].1.clone()),
        until_refused(gateways[1].1.clone()),
        deployment.run(&["reconcile"])
    );
    assert!(reconciled, "reconcile while serving: {report}");
    let store = store::Store::connect(&db.url).await.unwrap();
    // The two probes above cost too; the books have everything.
    let mut spent_in_books = 0i64;
    for _ in 0..600 {
        let (day_total,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(SUM(spent), 0) AS BIGINT) FROM day_spend")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        spent_in_books = day_total;
        if Money::from_nanos(day_total) >= a + b {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = Money::from_nanos(spent_in_books);
    eprintln!(
        "two gateway processes: limit {limit}, spent {total} ({:.1}% over)",
        (total - limit).nanos() as f64 * 100.0 / limit.nanos() as f64
    );
    assert!(total >= limit);
    assert!(total >= a + b);
    // The ledger's own metrics count what it folded and how late. A batch
    // is counted just after its commit, so a scrape may briefly trail the
    // rows; it must catch up.
    let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = test_support::metrics::scrape(&http, &format!("{ledger_url}/metrics")).await;
        let folded =
            test_support::metrics::value(&metrics, "modelrouter_ledger_events_folded_total");
        if folded.is_some_and(|f| f >= requests as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let value = |name: &str| -> f64 {
        test_support::metrics::value(&metrics, name)
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    let folded = value("modelrouter_ledger_events_folded_total");
    assert!(
        folded >= requests as f64,
        "{folded} folded, {requests} rows"
    );
    assert_eq!(value("modelrouter_ledger_lag_seconds_count"), folded);
    assert!(value("modelrouter_ledger_batches_total") >= 1.0);

    let (ok, text) = deployment.run(&["reconcile"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("matches"), "{text}");
    let today = chrono::Utc::now().date_naive().to_string();
    let (ok, csv) = deployment
        .run(&["ledger", "export", "--from", &today, "--to", &today])
        .await;
    assert!(ok, "{csv}");
    assert!(csv.starts_with("at,event_id,line,book,account,debit,credit,memo"));
    assert!(
        csv.lines()
            .filter(|l| l.contains(",provider_payable,"))
            .count()
            >= 2
    );

    sqlx::query("UPDATE day_spend SET spent = spent + 1")
        .execute(&store.pool)
        .await
        .unwrap();
    let (ok, text) = deployment.run(&["reconcile"]).await;
    assert!(!ok, "a corrupted day total must fail reconciliation");
    assert!(text.contains("day total"), "{text}");
}

/// Whether `key` gets `status` from the gateway at `url`.
async fn answers(http: &reqwest::Client, url: &str, key: &str, status: u16) -> bool {
    http.post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == status)
}

#[tokio::test]
async fn a_key_revoked_on_the_control_plane_stops_on_two_gateway_processes_within_a_second() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let secret = test_support::dashboard::KEY_HASH_SECRET;
    let (_sim, sim) = deployment.simulator().await;
    let _ledger = deployment.ledger().await;
    let mut cp_command = deployment.command(&["control-plane"], "cp");
    cp_command
        .env("MODELROUTER_LISTEN", "127.0.0.1:0")
        .env("MODELROUTER_KEY_HASH_SECRET", secret)
        .env(
            "MODELROUTER_SESSION_SECRET",
            test_support::dashboard::SESSION_SECRET,
        );
    let (_cp, line) = deployment.start(cp_command, "listening").await;
    let cp = test_support::deployment::url_in(&line);
    let gateways = deployment
        .gateways(
            &["gw-a", "gw-b"],
            &sim,
            &[("MODELROUTER_KEY_HASH_SECRET", secret)],
        )
        .await;

    let browser = test_support::dashboard::Browser::new(&cp);
    browser.sign_up("ops@example.com", "Ops").await;
    let (status, created) = browser
        .api(
            reqwest::Method::POST,
            "/api/v1/keys",
            Some(serde_json::json!({"name": "svc"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, session) = browser
        .api(reqwest::Method::GET, "/api/v1/session", None)
        .await;
    let account = session["account"].as_str().unwrap().to_owned();
    let (ok, text) = deployment
        .run(&["grant", "--account", &account, "--amount", "10"])
        .await;
    assert!(ok, "{text}");
    let http = reqwest::Client::new();
    for (_, url) in &gateways {
        let mut served = false;
        for _ in 0..500 {
            if answers(&http, url, &key, 200).await {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "{url} never accepted the issued key");
    }

    let (status, _) = browser
        .api(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let revoked_at = std::time::Instant::now();
    let stops = |url: String| {
        let (http, key) = (http.clone(), key.clone());
        async move {
            while revoked_at.elapsed() < Duration::from_secs(5) {
                if answers(&http, &url, &key, 401).await {
                    return Some(revoked_at.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            None
        }
    };
    let (a, b) = tokio::join!(stops(gateways[0].1.clone()), stops(gateways[1].1.clone()));
    eprintln!("revoked key refused after {a:?} and {b:?}");
    for took in [a, b] {
        let took = took.expect("the revoked key is refused");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
}

/// `modelrouter exporter` on its own, on NATS and PostgreSQL: the control
/// plane's destination reaches it through the log, a gateway's requests
/// arrive as traces, and a kill -9 mid-export loses none of them.
#[tokio::test]
async fn the_exporter_alone_delivers_from_nats_and_postgres_and_survives_kill9() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let secret = test_support::dashboard::KEY_HASH_SECRET;
    let telemetry = test_support::dashboard::SESSION_SECRET;
    let receiver = test_support::otlp::Receiver::start().await;
    let (_sim, sim) = deployment.simulator().await;
    let _ledger = deployment.ledger().await;
    let mut cp_command = deployment.command(&["control-plane"], "cp");
    cp_command
        .env("MODELROUTER_KEY_HASH_SECRET", secret)
        .env(
            "MODELROUTER_SESSION_SECRET",
            test_support::dashboard::SESSION_SECRET,
        )
        .env("MODELROUTER_TELEMETRY_SECRET", telemetry);
    let (_cp, line) = deployment.start(cp_command, "listening").await;
    let cp = test_support::deployment::url_in(&line);
    let exporter_command = || {
        let mut command = deployment.command(&["exporter"], "exporter");
        command
            .env("MODELROUTER_TELEMETRY_SECRET", telemetry)
            .env("MODELROUTER_EXPORTER_BACKOFF_MAX_MS", "1000")
            .env("MODELROUTER_LOG", "debug");
        command
    };
    let (mut exporter, line) = deployment.start(exporter_command(), "exporter").await;
    let exporter_url = test_support::deployment::url_in(&line);
    let gateways = deployment
        .gateways(&["gw-x"], &sim, &[("MODELROUTER_KEY_HASH_SECRET", secret)])
        .await;
    let gateway = &gateways[0].1;

    let browser = test_support::dashboard::Browser::new(&cp);
    browser.sign_up("traces@example.com", "Traced").await;
    let (status, created) = browser
        .api(reqwest::Method::POST, "/api/v1/telemetry/destinations",
             Some(serde_json::json!({"name": "collector", "endpoint": receiver.http_url(), "headers": {"x-team": "trace-secret-value-7391"}})))
        .await;
    assert_eq!(status, 201, "{created}");
    let (_, key) = browser
        .api(
            reqwest::Method::POST,
            "/api/v1/keys",
            Some(serde_json::json!({"name": "svc"})),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let (_, session) = browser
        .api(reqwest::Method::GET, "/api/v1/session", None)
        .await;
    let account = session["account"].as_str().unwrap().to_owned();
    let (ok, text) = deployment
        .run(&["grant", "--account", &account, "--amount", "10"])
        .await;
    assert!(ok, "{text}");

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    let send = |n: usize| {
        let (http, key, gateway) = (http.clone(), key.clone(), gateway.clone());
        async move {
            let mut ids = Vec::new();
            let mut tries = 0;
            while ids.len() < n && tries < 500 {
                tries += 1;
                let r = http
                    .post(format!("{gateway}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "trace me"}]}))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            ids
        }
    };
    ids.extend(send(5).await);
    assert_eq!(ids.len(), 5, "the key works");
    let arrived = |spans: &[test_support::otlp::Span], ids: &[String]| {
        ids.iter().all(|id| {
            spans
                .iter()
                .any(|s| s.parent_span_id.is_empty() && s.attr("modelrouter.request_id") == id)
        })
    };
    let spans = receiver
        .wait_for(Duration::from_secs(30), |s| arrived(s, &ids))
        .await;
    assert!(
        arrived(&spans, &ids),
        "{} spans for {ids:?}\n{}",
        spans.len(),
        deployment.log_of(&exporter)
    );
    assert!(spans
        .iter()
        .all(|s| s.headers.get("x-team").map(String::as_str) == Some("trace-secret-value-7391")));
    let metrics = http
        .get(format!("{exporter_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("modelrouter_exporter_spans_total{outcome=\"exported\"}"),
        "{metrics}"
    );
    assert_eq!(
        http.get(format!("{exporter_url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Killed while an export hangs: the restarted exporter sends everything.
    receiver.hang(true);
    let before = receiver.requests();
    ids.extend(send(10).await);
    let in_flight = test_support::eventually(Duration::from_secs(10), async || {
        receiver.requests() > before
    })
    .await;
    assert!(in_flight);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first_log = deployment.log_of(&exporter);
    assert!(
        first_log.contains("INFO"),
        "the exporter logged: {first_log}"
    );
    test_support::deployment::kill9(&mut exporter).await;
    receiver.hang(false);
    let (restarted, _) = deployment.start(exporter_command(), "exporter").await;
    let spans = receiver
        .wait_for(Duration::from_secs(30), |s| arrived(s, &ids))
        .await;
    assert!(arrived(&spans, &ids), "lost across kill -9");
    // The token is in no log (the exporter's at debug level).
    for log in [
        first_log,
        deployment.log_of(&restarted),
        deployment.log_of(&_cp),
    ] {
        assert!(!log.contains("trace-secret-value-7391"));
    }
}
