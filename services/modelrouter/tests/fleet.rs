//! Running as a fleet: services started together on one fresh database,
//! probes a load balancer can use, graceful stops, breakers shared between
//! gateway processes.

use std::time::Duration;

use test_support::backends::{TestDb, NATS_URL};
use test_support::deployment::Deployment;

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");

/// Eight pools migrating one fresh database at once apply each migration
/// exactly once between them, and none fails.
#[tokio::test]
async fn concurrent_migrations_apply_each_version_once() {
    let db = TestDb::new().await;
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(store::Store::connect(&db.url).await.unwrap());
    }
    let runs = futures_util::future::join_all(stores.iter().map(store::Store::migrate)).await;
    let mut applied: Vec<i64> = Vec::new();
    for run in runs {
        applied.extend(run.expect("every concurrent migrate succeeds"));
    }
    applied.sort_unstable();
    let (versions,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(&stores[0].pool)
        .await
        .unwrap();
    let expected: Vec<i64> = (1..=versions).collect();
    assert_eq!(
        applied, expected,
        "each version applied once, by one of them"
    );
}

/// The readiness check's view of migrations: all pending on a fresh
/// database (no table yet), none once applied.
#[tokio::test]
async fn pending_migrations_are_counted_until_applied() {
    let db = TestDb::new().await;
    let store = store::Store::connect(&db.url).await.unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert!(pending >= 6, "{pending}");
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.len(), pending);
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
}

/// `modelrouter ledger`, `control-plane` and three `migrate` commands
/// started at the same instant on a fresh database all come up.
#[tokio::test]
async fn services_started_together_on_a_fresh_database_all_come_up() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let migrations = (0..3).map(|n| {
        let mut command = deployment.command(&["migrate"], &format!("migrate-{n}"));
        async move { command.output().await.expect("modelrouter runs") }
    });
    let mut control_plane = deployment.command(&["control-plane"], "cp");
    control_plane.env("MODELROUTER_LISTEN", "127.0.0.1:0");
    let (ledger, cp, migrated) = tokio::join!(
        deployment.start(deployment.command(&["ledger"], "ledger"), "ledger"),
        deployment.start(control_plane, "listening"),
        futures_util::future::join_all(migrations),
    );
    for output in migrated {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop((ledger, cp));
}

/// GET `url`: the status and the JSON body (`Null` when none).
async fn probe(http: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    match http.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or_default())
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Every service of the distributed deployment answers its probes without
/// a key, and says what it checked.
#[tokio::test]
async fn every_service_answers_livez_and_readyz_without_a_key() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let (_sim, sim) = deployment.simulator().await;
    let (_ledger, ledger) = deployment.ledger_probed().await;
    let (_cp, cp_line) = deployment
        .start(deployment.command(&["control-plane"], "cp"), "listening")
        .await;
    let control_plane = test_support::deployment::url_in(&cp_line);
    let gateways = deployment.gateways(&["gw-probed"], &sim, &[]).await;
    let http = reqwest::Client::new();
    let expected: [(&str, &[&str]); 4] = [
        (&ledger, &["event_log", "store"]),
        (&control_plane, &["event_log", "store"]),
        (
            &gateways[0].1,
            &["account_views", "key_views", "policy_views"],
        ),
        (&sim, &[]),
    ];
    // `modelrouter probe`, as a container health check runs it.
    let listen = gateways[0].1.trim_start_matches("http://").to_owned();
    let probe_cli = |listen: String| {
        let mut command = deployment.command(&["probe", "readyz"], "probe");
        command.env("MODELROUTER_LISTEN", listen);
        async move { command.output().await.expect("modelrouter runs") }
    };
    let ok = probe_cli(listen).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"ready\""));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    assert!(!probe_cli(nobody).await.status.success());
    for (url, checks) in expected {
        assert_eq!(probe(&http, &format!("{url}/livez")).await.0, 200, "{url}");
        let (status, body) = probe(&http, &format!("{url}/readyz")).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["status"], "ready");
        for check in checks {
            assert_eq!(body["checks"][check], "ok", "{url}: {body}");
        }
    }
}

/// A gateway started while the event log is down, with no saved views,
/// serves its probes but is not ready (it would refuse every key); once the
/// log comes up it loads the views and becomes ready.
#[tokio::test]
async fn a_gateway_is_not_ready_until_its_views_are_loaded() {
    let mut nats = test_support::backends::OwnNats::start().await;
    nats.stop();
    let deployment = Deployment::new(BIN, &nats.url, "");
    let logged = [("MODELROUTER_LOG", "info,gateway=debug,eventlog=debug")];
    let gateways = deployment
        .gateways(&["gw-early"], "http://127.0.0.1:9", &logged)
        .await;
    let url = &gateways[0].1;
    let http = reqwest::Client::new();
    assert_eq!(probe(&http, &format!("{url}/livez")).await.0, 200);
    let (status, body) = probe(&http, &format!("{url}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["checks"]["key_views"]
            .as_str()
            .is_some_and(|s| s.contains("not loaded")),
        "{body}"
    );
    nats.restart().await;
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..300 {
        last = probe(&http, &format!("{url}/readyz")).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last.0,
        200,
        "never ready after the log came up: {}\nthe gateway's log:\n{}",
        last.1,
        deployment.log_of(&gateways[0].0)
    );
}

/// SIGTERM during a stream: `/readyz` turns 503 at once, the stream runs to
/// its end, the process exits 0, and its usage reached the books (reconcile
/// is clean and no journal is left behind).
#[tokio::test]
async fn sigterm_drains_an_open_stream_and_exits_cleanly() {
    use test_support::deployment::{terminate, up};
    let dir = test_support::backends::TempDir::new();
    let mut up = up(
        BIN,
        &dir.0,
        &[
            ("MODELROUTER_SIM_CHUNK_DELAY_MS", "40"),
            ("MODELROUTER_DRAIN_DELAY_MS", "2000"),
        ],
    )
    .await;
    let key = up.printed_key.clone().expect("a key on first start");
    let http = reqwest::Client::new();
    let mut stream = http
        .post(format!("{}/v1/chat/completions", up.url))
        .bearer_auth(&key)
        .json(&serde_json::json!({
            "model": "gpt-4.1-mini", "stream": true, "max_tokens": 60,
            "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]
        }))
        .send()
        .await
        .expect("stream starts");
    assert_eq!(stream.status(), 200, "{:?}", stream.text().await);
    let mut body = String::from_utf8_lossy(&stream.chunk().await.unwrap().unwrap()).to_string();
    let pid = up.child.id().expect("running");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // The signal arrives asynchronously: poll (bounded) within the drain delay.
    let mut ready = (0, serde_json::Value::Null);
    for _ in 0..150 {
        ready = probe(&reqwest::Client::new(), &format!("{}/readyz", up.url)).await;
        if ready.0 != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert_eq!(ready.1["status"], "draining");
    let rest = async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), rest)
        .await
        .expect("the stream ends");
    assert!(body.contains("data: [DONE]"), "the stream was cut: {body}");
    let exit = tokio::time::timeout(Duration::from_secs(30), up.child.wait())
        .await
        .expect("exits after the drain")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    terminate(&mut up.child).await;
    let out = tokio::process::Command::new(BIN)
        .arg("reconcile")
        .env("MODELROUTER_DATA_DIR", &dir.0)
        .env_remove("MODELROUTER_EVENT_LOG")
        .env_remove("MODELROUTER_DATABASE_URL")
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no usage is missing"), "{text}");
}

/// The breaker of `model` as the gateway at `url` reports it: its state
/// and the replica that tripped it.
async fn breaker(http: &reqwest::Client, url: &str, model: &str) -> (String, Option<String>) {
    let report: serde_json::Value = match http
        .get(format!("{url}/v1/router/health"))
        .bearer_auth(test_support::deployment::KEY)
        .send()
        .await
    {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let models = report["models"].as_array().cloned().unwrap_or_default();
    let found = models.iter().find(|m| m["model"] == model);
    match found {
        Some(m) => (
            m["state"].as_str().unwrap_or_default().to_owned(),
            m["tripped_by"].as_str().map(str::to_owned),
        ),
        None => (String::new(), None),
    }
}

/// Polls `url` (bounded: 10 s) until `model`'s breaker is `state`; how long it took.
async fn until_breaker(
    http: &reqwest::Client,
    url: &str,
    model: &str,
    state: &str,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    for _ in 0..2_000 {
        if breaker(http, url, model).await.0 == state {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A breaker one gateway process opens is open on the others within a
/// moment, naming who tripped it, and on a replica started afterwards; the
/// other replicas turn the model away without trying it; when a probe
/// succeeds after the cool-down, it closes everywhere.
#[tokio::test]
async fn a_breaker_opened_on_one_gateway_is_open_on_all() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let (_sim, sim) = deployment.simulator().await;
    let _ledger = deployment.ledger().await;
    let account = uuid::Uuid::nil().to_string();
    let (ok, text) = deployment
        .run(&["grant", "--account", &account, "--amount", "10"])
        .await;
    assert!(ok, "{text}");
    let config = deployment.data_dir("breakers.toml");
    std::fs::write(
        &config,
        "[gateway.breaker]\nconsecutive_failures = 2\ncooldown_ms = 12000\n",
    )
    .unwrap();
    let config = config.to_string_lossy().to_string();
    let env = [("MODELROUTER_CONFIG", config.as_str())];
    let gateways = deployment.gateways(&["gw-a", "gw-b"], &sim, &env).await;
    let (a, b) = (&gateways[0].1, &gateways[1].1);
    let http = reqwest::Client::new();
    let chat = |url: &str| {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(test_support::deployment::KEY)
            .json(&serde_json::json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    for url in [a, b] {
        let mut served = false;
        for _ in 0..300 {
            if chat(url).await.is_ok_and(|r| r.status() == 200) {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "{url} never served");
    }

    let faults = format!("{sim}/_sim/faults");
    let rule = serde_json::json!({"provider": "openai", "model": "gpt-4.1", "status": 500});
    let set = http.post(&faults).json(&rule).send().await.unwrap();
    assert!(set.status().is_success(), "{:?}", set.text().await);
    for _ in 0..10 {
        let _ = chat(a).await;
        if breaker(&http, a, "gpt-4.1").await.0 == "open" {
            break;
        }
    }
    assert_eq!(breaker(&http, a, "gpt-4.1").await.0, "open");
    let spread = until_breaker(&http, b, "gpt-4.1", "open")
        .await
        .expect("the breaker reaches gw-b");
    println!("breaker open on the other replica after {spread:?}");
    assert_eq!(
        breaker(&http, b, "gpt-4.1").await.1.as_deref(),
        Some("gw-a"),
        "gw-b names the replica that tripped it"
    );
    let skipped = chat(b).await.unwrap();
    assert_eq!(skipped.status(), 503);
    let body = skipped.text().await.unwrap();
    assert!(
        body.contains("gpt-4.1") && body.contains("breaker"),
        "gw-b turns gpt-4.1 away without trying it: {body}"
    );
    let late = deployment.gateways(&["gw-c"], &sim, &env).await;
    let c = &late[0].1;
    assert_eq!(
        breaker(&http, c, "gpt-4.1").await,
        ("open".to_owned(), Some("gw-a".to_owned())),
        "a replica started late starts with the open breaker"
    );

    http.delete(&faults).send().await.unwrap();
    let mut closed_on_a = false;
    for _ in 0..600 {
        if chat(a).await.is_ok_and(|r| {
            r.headers()
                .get("x-model-router-model")
                .is_some_and(|m| m == "gpt-4.1")
        }) && breaker(&http, a, "gpt-4.1").await.0 == "closed"
        {
            closed_on_a = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        closed_on_a,
        "a probe after the cool-down closes gw-a's breaker"
    );
    for url in [b, c] {
        until_breaker(&http, url, "gpt-4.1", "closed")
            .await
            .expect("closed on every replica");
    }

    // A 429 with Retry-After on gw-a holds gpt-4.1 back on gw-b too.
    let rule = serde_json::json!({"provider": "openai", "model": "gpt-4.1", "status": 429, "retry_after_s": 30});
    http.post(&faults).json(&rule).send().await.unwrap();
    let _ = chat(a).await;
    let cooling = |url: String| {
        let http = http.clone();
        async move {
            let report: serde_json::Value = http
                .get(format!("{url}/v1/router/health"))
                .bearer_auth(test_support::deployment::KEY)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            report["models"]
                .as_array()?
                .iter()
                .find(|m| m["model"] == "gpt-4.1")?["cooling_down_for_ms"]
                .as_u64()
        }
    };
    let mut seen = None;
    for _ in 0..500 {
        seen = cooling(b.clone()).await;
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = seen.expect("gw-b cools gpt-4.1 down as gw-a's provider asked");
    assert!((20_000..=30_000).contains(&left), "{left} ms left");
}
