//! The `modelrouter` binary, run as a user would.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use test_support::deployment::{temp_dir, Up};
use test_support::metrics;

/// Starts `modelrouter up` on a free port with `env`.
async fn up(data_dir: &Path, env: &[(&str, &str)]) -> Up {
    test_support::deployment::up(env!("CARGO_BIN_EXE_modelrouter"), data_dir, env).await
}

async fn chat_status(url: &str, key: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "economy", "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .unwrap();
    let provider = response
        .headers()
        .get("x-model-router-provider")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), provider)
}

#[tokio::test]
async fn up_serves_the_simulator_prints_a_key_once_and_keeps_it() {
    let data = temp_dir("up");
    let mut first = up(&data, &[]).await;
    assert!(
        first.banner.contains("built-in simulator"),
        "{}",
        first.banner
    );
    let key = first.printed_key.clone().expect("a key on first start");
    assert!(key.len() >= 6 + 32);
    let (status, provider) = chat_status(&first.url, &key).await;
    assert_eq!(status, 200);
    assert!(!provider.is_empty());
    assert_eq!(
        chat_status(&first.url, "mr_sk_wrongwrongwrongwrongwrongwrongwrong1")
            .await
            .0,
        401
    );
    // The first account's user, printed once, logs in and owns the key.
    let line = first
        .banner
        .lines()
        .find(|l| l.starts_with("Dashboard:"))
        .expect("the first account's credentials");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |label: &str| words[words.iter().position(|w| *w == label).unwrap() + 1];
    let (email, password) = (after("email"), after("password"));
    assert_eq!(email, "admin@localhost");
    let browser = test_support::dashboard::Browser::new(&first.url);
    let login = browser.log_in(email, password).await;
    assert_eq!(login.status, 303, "{}", login.body);
    assert_eq!(
        login.location.as_deref(),
        Some("/account/password"),
        "a printed password must be changed at first login"
    );
    let (status, keys) = browser
        .api(reqwest::Method::GET, "/api/v1/keys", None)
        .await;
    assert_eq!(status, 200);
    let api_key = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "api")
        .unwrap();
    assert_eq!(
        api_key["last_four"].as_str(),
        Some(&key[key.len() - 4..]),
        "the printed key belongs to the first account"
    );
    assert_eq!(api_key["created_by"], "admin@localhost");
    // The simulator's controls: the operator's printed admin key only.
    let admin_key = first
        .banner
        .split_whitespace()
        .find(|w| w.starts_with("mr_ak_"))
        .expect("the operator's admin key is printed")
        .to_owned();
    let http = reqwest::Client::new();
    let requests = format!("{}/sim/_sim/requests", first.url);
    assert_eq!(http.get(&requests).send().await.unwrap().status(), 401);
    let faults = format!("{}/sim/_sim/faults", first.url);
    let anonymous_fault = http
        .post(&faults)
        .json(&serde_json::json!({"provider": "groq", "status": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous_fault.status(),
        401,
        "no one breaks providers anonymously"
    );
    assert_eq!(
        http.get(&requests)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "an API key is not an operator's admin key"
    );
    let seen = http
        .get(&requests)
        .bearer_auth(&admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), 200);
    // A tenant's own admin key does not open them either.
    let tenant = test_support::dashboard::Browser::new(&first.url);
    tenant.sign_up("tenant@example.com", "Tenant").await;
    let (status, created) = tenant
        .api(
            reqwest::Method::POST,
            "/api/v1/keys",
            Some(serde_json::json!({"name": "automation", "admin": true})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let tenant_admin = created["key"].as_str().unwrap();
    assert_eq!(
        http.get(&requests)
            .bearer_auth(tenant_admin)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // The operator page is the operator's.
    assert_eq!(tenant.get("/operator").await.status, 403);
    let operator = browser.get("/operator").await;
    assert_eq!(operator.status, 200, "{}", operator.body);
    assert!(operator.body.contains("id=\"gateways\""));
    first.child.kill().await.unwrap();

    // Only the service's user may read what it keeps: files 0600, dirs 0700.
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if path.is_dir() {
                walk(&path, out);
            }
            out.push((path, mode));
        }
    }
    let mut modes = Vec::new();
    walk(&data, &mut modes);
    assert!(modes.iter().any(|(p, _)| p.ends_with("ledger.db")));
    assert!(modes
        .iter()
        .any(|(p, _)| p.extension().is_some_and(|e| e == "wal")));
    for (path, mode) in &modes {
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
    use std::os::unix::fs::PermissionsExt;
    let root = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(root, 0o700, "the data dir itself");

    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(&key),
                "{} holds the plaintext key",
                path.display()
            );
            assert!(
                !text.contains(password),
                "{} holds the plaintext password",
                path.display()
            );
        }
    }

    let mut second = up(&data, &[]).await;
    assert_eq!(second.printed_key, None, "the key is shown once");
    assert!(
        !second.banner.contains("password"),
        "the password is shown once"
    );
    assert_eq!(chat_status(&second.url, &key).await.0, 200);
    second.child.kill().await.unwrap();
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test]
async fn a_bootstrap_key_from_the_environment_is_accepted() {
    let data = temp_dir("bootstrap");
    let key = "mr_sk_TestBootstrapKey0123456789abcdefghijk";
    let mut running = up(&data, &[("MODELROUTER_BOOTSTRAP_KEY", key)]).await;
    assert_eq!(chat_status(&running.url, key).await.0, 200);
    running.child.kill().await.unwrap();
    std::fs::remove_dir_all(&data).ok();
}

/// `up`'s `/metrics` carries its in-process ledger's: what it folded, in
/// how many batches, and how long after each event its state was published.
#[tokio::test]
async fn up_exports_the_ledgers_fold_and_lag_on_metrics() {
    let data = temp_dir("metrics");
    let mut running = up(&data, &[]).await;
    let key = running.printed_key.clone().unwrap();
    for _ in 0..3 {
        assert_eq!(chat_status(&running.url, &key).await.0, 200);
    }
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", running.url);
    let count = |text: &str| metrics::value(text, "modelrouter_ledger_lag_seconds_count");
    let mut last = String::new();
    for _ in 0..100 {
        last = metrics::scrape(&http, &url).await;
        // The account's opening and grant, then the three requests.
        if count(&last).is_some_and(|c| c >= 5.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last.contains("# TYPE modelrouter_ledger_lag_seconds histogram"),
        "{last}"
    );
    assert!(
        last.contains("modelrouter_breaker_state"),
        "the gateway's own metrics stay: {last}"
    );
    assert!(count(&last).is_some_and(|c| c >= 5.0), "{last}");
    running.child.kill().await.unwrap();
    std::fs::remove_dir_all(&data).ok();
}

/// The o200k tokenizer holds about 70 MB, so an idle process does not load
/// it: the first request that needs a count does (here, the simulator's
/// reply), unless `gateway.preload_tokenizer` asks for it at start.
#[tokio::test]
async fn the_tokenizer_loads_on_first_use_unless_preloaded() {
    let http = reqwest::Client::new();
    let loaded = async |url: &str| {
        let text = metrics::scrape(&http, &format!("{url}/metrics")).await;
        metrics::value(&text, "modelrouter_tokenizer_loaded")
            .unwrap_or_else(|| panic!("no modelrouter_tokenizer_loaded in {text}"))
    };
    let data = temp_dir("tokenizer-lazy");
    let mut running = up(&data, &[]).await;
    assert_eq!(loaded(&running.url).await, 0.0, "idle: not loaded");
    let key = running.printed_key.clone().unwrap();
    assert_eq!(chat_status(&running.url, &key).await.0, 200);
    assert_eq!(loaded(&running.url).await, 1.0, "loaded by the first use");
    running.child.kill().await.unwrap();
    std::fs::remove_dir_all(&data).ok();

    let data = temp_dir("tokenizer-preload");
    let mut running = up(&data, &[("MODELROUTER_PRELOAD_TOKENIZER", "true")]).await;
    assert_eq!(loaded(&running.url).await, 1.0, "preloaded at start");
    running.child.kill().await.unwrap();
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test]
async fn sighup_reloads_the_catalog() {
    let data = temp_dir("sighup");
    let catalog = data.join("models.toml");
    std::fs::write(&catalog, catalog::BUILTIN_TOML).unwrap();
    // Polling is effectively off, so only the signal can trigger the reload.
    let config = data.join("config.toml");
    std::fs::write(&config, "catalog_poll_ms = 3600000\n").unwrap();
    let env = [
        ("MODELROUTER_CATALOG", catalog.to_str().unwrap()),
        ("MODELROUTER_CONFIG", config.to_str().unwrap()),
    ];
    let mut running = up(&data, &env).await;
    let key = running.printed_key.clone().unwrap();
    let price = |url: String, key: String| async move {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{url}/v1/models/gpt-4.1"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["pricing"]["input_per_mtok"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(price(running.url.clone(), key.clone()).await, "2");
    let edited = catalog::BUILTIN_TOML.replacen(
        "input_per_mtok = \"2.00\"\noutput_per_mtok = \"8.00\"",
        "input_per_mtok = \"1.50\"\noutput_per_mtok = \"8.00\"",
        1,
    );
    assert_ne!(edited, catalog::BUILTIN_TOML);
    std::fs::write(&catalog, edited).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        price(running.url.clone(), key.clone()).await,
        "2",
        "no reload without the signal"
    );
    running.hangup().await;
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if price(running.url.clone(), key.clone()).await == "1.5" {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "SIGHUP reloaded the catalog");
    running.child.kill().await.unwrap();
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test]
async fn a_closed_stdout_does_not_stop_the_server() {
    let data = temp_dir("pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelrouter"))
        .arg("up")
        .env("MODELROUTER_LISTEN", "127.0.0.1:0")
        .env("MODELROUTER_DATA_DIR", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server keeps running"
    );
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&data).ok();
}

/// Two `up`s on one data dir would fold the same books twice over: the
/// second is refused while the first runs, and starts once it is gone,
/// even when the first was killed with SIGKILL and never cleaned up.
#[tokio::test]
async fn a_second_up_on_the_same_data_dir_is_refused_until_the_first_is_gone() {
    let bin = env!("CARGO_BIN_EXE_modelrouter");
    let data = temp_dir("two-ups");
    let mut first = up(&data, &[]).await;
    let second = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(bin)
            .arg("up")
            .env("MODELROUTER_DATA_DIR", &data)
            .env("MODELROUTER_LISTEN", "127.0.0.1:0")
            .env_remove("MODELROUTER_BOOTSTRAP_KEY")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the second up gives up at once")
    .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    let pid = first.child.id().unwrap().to_string();
    assert!(
        stderr.contains("another `modelrouter up`") && stderr.contains(&pid),
        "{stderr}"
    );
    let (status, _) = chat_status(&first.url, first.printed_key.as_deref().unwrap()).await;
    assert_eq!(status, 200, "the first one serves on");

    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let again = up(&data, &[]).await;
    assert!(
        again.banner.contains("Using the API keys"),
        "{}",
        again.banner
    );
    drop(again);
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test]
async fn bad_settings_are_refused_with_a_message() {
    let bin = env!("CARGO_BIN_EXE_modelrouter");
    let data = temp_dir("bad");
    let catalog = data.join("models.toml");
    std::fs::write(&catalog, "version = 1\n[providers.openai]\nname = \"x\"\npricing_source = \"y\"\n[[models]]\nid = \"m\"\nprovider = \"openai\"\n").unwrap();
    let out = Command::new(bin)
        .args(["catalog", "check"])
        .arg(&catalog)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("models[0]") && stderr.contains("provider_model_id"),
        "{stderr}"
    );

    let out = Command::new(bin)
        .args(["catalog", "check"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());

    let out = Command::new(bin)
        .arg("up")
        .env("MODELROUTER_LISTEN", "not-an-address")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MODELROUTER_LISTEN"));

    let out = Command::new(bin)
        .arg("up")
        .env("MODELROUTER_DATA_DIR", &data)
        .env("MODELROUTER_LISTEN", "127.0.0.1:0")
        .env("MODELROUTER_BOOTSTRAP_KEY", "short")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MODELROUTER_BOOTSTRAP_KEY"));
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn public_pages_show_the_catalog_live_status_and_incidents_without_tenant_data() {
    let dir = temp_dir("public-pages");
    let up = up(&dir, &[]).await;
    let key = up.printed_key.clone().expect("a key is printed");
    let admin_key = up
        .operator_key()
        .expect("the operator's admin key is printed");
    let http = reqwest::Client::new();
    let page = async |path: &str| {
        let r = http.get(format!("{}{path}", up.url)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, landing) = page("/").await;
    assert_eq!(status, 200, "no session needed");
    for tier in ["economy", "standard", "premium"] {
        assert!(landing.contains(&format!("id=\"tier-{tier}\"")), "{tier}");
    }
    assert!(landing.contains("id=\"provider-status\"") && landing.contains("operational"));
    assert!(landing.contains("href=\"/signup\"") && landing.contains("href=\"/login\""));
    let (_, status_page) = page("/status").await;
    assert!(status_page.contains("No circuit breaker has opened"));
    let (status, docs) = page("/docs").await;
    assert_eq!(status, 200);
    assert!(
        docs.contains("<h2>API</h2>") && docs.contains("X-Request-Id") && docs.contains("<table>")
    );

    // Every provider fails: breakers open, and the status page says so.
    for provider in [
        "groq",
        "cerebras",
        "openai",
        "google",
        "anthropic",
        "xai",
        "bedrock",
    ] {
        let set = http
            .post(format!("{}/sim/_sim/faults", up.url))
            .bearer_auth(&admin_key)
            .json(&serde_json::json!({"provider": provider, "status": 500}))
            .send()
            .await
            .unwrap();
        assert!(set.status().is_success(), "{provider}: {}", set.status());
    }
    let mut request_ids = Vec::new();
    let mut shown = String::new();
    for _ in 0..60 {
        let r = http
            .post(format!("{}/v1/chat/completions", up.url))
            .bearer_auth(&key)
            .json(&serde_json::json!({"model": "economy", "user": "secret-end-user", "messages": [{"role": "user", "content": "Hello"}]}))
            .send()
            .await
            .unwrap();
        request_ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
        shown = page("/status").await.1;
        if shown.contains("id=\"incidents\"") {
            break;
        }
    }
    assert!(
        shown.contains("id=\"incidents\""),
        "an opening is listed: {shown}"
    );
    assert!(
        shown.contains("down") || shown.contains("degraded"),
        "{shown}"
    );
    let (_, landing) = page("/").await;
    for text in [&shown, &landing] {
        for secret in request_ids.iter().map(String::as_str).chain([
            key.as_str(),
            &admin_key,
            "secret-end-user",
            "admin@localhost",
        ]) {
            assert!(!text.contains(secret), "a public page shows {secret}");
        }
    }
}

/// An operator command run where no deployment is (the wrong directory, a
/// mistyped data dir) is refused with a message and creates nothing:
/// opening the embedded files would make an empty data dir, on which
/// `reconcile` said "no usage is missing" and `grant` appended credits no
/// deployment would ever read.
#[tokio::test]
async fn operator_commands_refuse_a_data_dir_without_a_deployment() {
    let bin = env!("CARGO_BIN_EXE_modelrouter");
    let parent = temp_dir("no-deployment");
    let data = parent.join("data");
    let account = uuid::Uuid::now_v7().to_string();
    let commands: [&[&str]; 4] = [
        &["reconcile"],
        &["grant", "--account", &account, "--amount", "10"],
        &[
            "ledger",
            "export",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-31",
        ],
        &["user", "reset-password", "a@example.com"],
    ];
    for args in commands {
        let out = Command::new(bin)
            .args(args)
            .env("MODELROUTER_DATA_DIR", &data)
            .env_remove("MODELROUTER_EVENT_LOG")
            .env_remove("MODELROUTER_DATABASE_URL")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            stderr.contains("no deployment's data here") && stderr.contains("events.db"),
            "{args:?}: {stderr}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    std::fs::remove_dir_all(&parent).ok();
}
