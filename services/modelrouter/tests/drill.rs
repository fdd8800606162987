//! The fleet drill: three gateway processes, the ledger and the control
//! plane on a NATS server of the drill's own and a fresh PostgreSQL
//! database, with clients spreading load over the gateways as a balancer
//! would (over the gateways whose `/readyz` answers; a refused connection
//! goes to the next gateway; a request a gateway accepted is never sent twice). Under load: kill -9 a gateway
//! and restart it on its journal, kill -9 and restart the ledger, restart
//! NATS, then a rolling restart (SIGTERM, drain, start, ready) of every
//! gateway. Afterwards every 200 the clients saw is in the books exactly
//! once, no usage is lost or doubled, reconcile is clean; a revoked key
//! and an opened breaker reach every gateway.
//!
//! `make test` runs it small; `make drill` runs it at full size
//! (`DRILL_CLIENTS`, `DRILL_PHASE_MS`) and prints the figures the README
//! quotes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use test_support::backends::{OwnNats, TestDb};
use test_support::dashboard::{Browser, KEY_HASH_SECRET, SESSION_SECRET};
use test_support::deployment::{kill9, terminate, url_in, Deployment};
use tokio::process::Child;

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");
const GATEWAYS: [&str; 3] = ["gw-1", "gw-2", "gw-3"];
const PHASES: [&str; 5] = [
    "steady",
    "gateway kill -9",
    "ledger kill -9",
    "NATS restart",
    "rolling restart",
];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the clients saw in one phase.
#[derive(Debug, Default, Clone)]
struct Tally {
    ok: u64,
    refused: HashMap<u16, u64>,
    failed: u64,
}

/// The clients' record of the drill.
#[derive(Default)]
struct Seen {
    phases: Mutex<Vec<Tally>>,
    /// The request id of every 200.
    served: Mutex<Vec<String>>,
}

/// One fixed address per gateway, as a balancer's configuration holds.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct Fleet {
    deployment: Deployment,
    sim: String,
    ports: Vec<u16>,
    gateways: Vec<Option<Child>>,
    ledger: Option<Child>,
}

impl Fleet {
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    async fn start_gateway(&mut self, i: usize) {
        let mut command = self.deployment.gateway_command(GATEWAYS[i], &self.sim);
        command
            .env("MODELROUTER_GATEWAY_ID", GATEWAYS[i])
            .env("MODELROUTER_LISTEN", format!("127.0.0.1:{}", self.ports[i]))
            .env("MODELROUTER_KEY_HASH_SECRET", KEY_HASH_SECRET)
            .env("MODELROUTER_DRAIN_DELAY_MS", "1500");
        let (child, _) = self.deployment.start(command, "listening").await;
        self.gateways[i] = Some(child);
        assert!(
            ready(&self.url(i)).await,
            "{} never became ready",
            GATEWAYS[i]
        );
    }
}

/// Polls `/readyz` (bounded: 30 s), as a balancer does before sending traffic.
async fn ready(url: &str) -> bool {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The balancer's view: every 100 ms, the gateways whose `/readyz` answers
/// 200 (all of them while none does), as a Kubernetes Service's endpoints or
/// a balancer's active health checks follow readiness.
async fn balance(all: Vec<String>, ready: Arc<RwLock<Vec<String>>>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let mut now = Vec::new();
        for url in &all {
            if http
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                now.push(url.clone());
            }
        }
        *ready.write().unwrap() = if now.is_empty() { all.clone() } else { now };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client: sends chats round-robin over the gateways until `stop`,
/// counting what it saw under the current phase.
async fn client(
    n: usize,
    urls: Arc<RwLock<Vec<String>>>,
    key: String,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut turn = n;
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = phase.load(Ordering::Relaxed);
        let body = serde_json::json!({
            "model": "gpt-4.1-mini", "max_tokens": 8,
            "messages": [{"role": "user", "content": format!("client {n} request {sent}")}]
        });
        sent += 1;
        let targets = urls.read().unwrap().clone();
        let mut outcome = Err(());
        // A refused connection moves to the next gateway, as nginx's
        // proxy_next_upstream does; anything after the request went out is final.
        for _ in 0..targets.len() * 4 {
            turn += 1;
            let url = &targets[turn % targets.len()];
            match http
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
            {
                Ok(response) => {
                    outcome = Ok(response);
                    break;
                }
                Err(e) if e.is_connect() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => {
                    eprintln!("client {n}: {url}: {e:?}");
                    break;
                }
            }
        }
        // Served means a 200 whose body arrived whole.
        let seen_as = match outcome {
            Ok(response) if response.status() == 200 => {
                let id = test_support::header(&response, "x-request-id");
                match response.bytes().await {
                    Ok(_) => Seen200(id),
                    Err(e) => {
                        eprintln!("client {n}: body: {e:?}");
                        Failed
                    }
                }
            }
            Ok(response) => Refused(response.status().as_u16()),
            Err(()) => Failed,
        };
        let mut phases = seen.phases.lock().unwrap();
        let tally = &mut phases[now];
        match seen_as {
            Seen200(id) => {
                tally.ok += 1;
                seen.served.lock().unwrap().push(id);
            }
            Refused(status) => *tally.refused.entry(status).or_default() += 1,
            Failed => tally.failed += 1,
        }
    }
}

/// How one request ended for its client.
enum Outcome {
    Seen200(String),
    Refused(u16),
    Failed,
}
use Outcome::{Failed, Refused, Seen200};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_drill_loses_and_doubles_nothing() {
    let clients = env_or("DRILL_CLIENTS", 4) as usize;
    let phase_ms = env_or("DRILL_PHASE_MS", 1_500);
    let mut nats = OwnNats::start().await;
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, &nats.url, &db.url);
    let (_sim, sim) = deployment.simulator().await;
    let ledger = deployment.ledger().await;
    let mut cp_command = deployment.command(&["control-plane"], "cp");
    cp_command
        .env("MODELROUTER_KEY_HASH_SECRET", KEY_HASH_SECRET)
        .env("MODELROUTER_SESSION_SECRET", SESSION_SECRET);
    let (_cp, line) = deployment.start(cp_command, "listening").await;
    let cp = url_in(&line);
    let mut fleet = Fleet {
        deployment,
        sim,
        ports: GATEWAYS.iter().map(|_| free_port()).collect(),
        gateways: GATEWAYS.iter().map(|_| None).collect(),
        ledger: Some(ledger),
    };
    for i in 0..GATEWAYS.len() {
        fleet.start_gateway(i).await;
    }

    let browser = Browser::new(&cp);
    browser.sign_up("drill@example.com", "Drill").await;
    let key = browser.create_key("load").await;
    let (_, session) = browser
        .api(reqwest::Method::GET, "/api/v1/session", None)
        .await;
    let account = session["account"].as_str().unwrap().to_owned();
    let (ok, text) = fleet
        .deployment
        .run(&["grant", "--account", &account, "--amount", "1000"])
        .await;
    assert!(ok, "{text}");
    let urls: Vec<String> = (0..GATEWAYS.len()).map(|i| fleet.url(i)).collect();
    let http = reqwest::Client::new();
    let mut warm = Vec::new();
    for url in &urls {
        let mut served = false;
        for _ in 0..500 {
            let response = http
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&serde_json::json!({"model": "gpt-4.1-mini", "max_tokens": 1, "messages": [{"role": "user", "content": "warm"}]}))
                .send()
                .await;
            if let Ok(response) = response.as_ref() {
                if response.status() == 200 {
                    warm.push(test_support::header(response, "x-request-id"));
                    served = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "{url} never served the issued key");
    }

    // Load, and the ledger's backlog sampled under it.
    let seen = Arc::new(Seen::default());
    seen.served.lock().unwrap().extend(warm);
    *seen.phases.lock().unwrap() = vec![Tally::default(); PHASES.len()];
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let shared_urls = Arc::new(RwLock::new(urls.clone()));
    let balancer = tokio::spawn(balance(
        urls.clone(),
        Arc::clone(&shared_urls),
        Arc::clone(&stop),
    ));
    let load: Vec<_> = (0..clients)
        .map(|n| {
            tokio::spawn(client(
                n,
                Arc::clone(&shared_urls),
                key.clone(),
                Arc::clone(&phase),
                Arc::clone(&stop),
                Arc::clone(&seen),
            ))
        })
        .collect();
    let store = store::Store::connect(&db.url).await.unwrap();
    let log = eventlog::nats::NatsLog::lazy(&nats.url, &fleet.deployment.prefix)
        .await
        .unwrap();
    let backlog = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sampler = {
        let (store, backlog, stop) = (store.clone(), Arc::clone(&backlog), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let last = eventlog::EventLog::last_seq(&log).await;
                let folded: Result<(Option<i64>,), _> =
                    sqlx::query_as("SELECT MAX(seq) FROM (SELECT seq FROM applied_events UNION ALL SELECT seq FROM requests) a")
                        .fetch_one(&store.pool)
                        .await;
                if let (Ok(last), Ok((Some(folded),))) = (last, folded) {
                    backlog
                        .lock()
                        .unwrap()
                        .push(last.saturating_sub(folded as u64));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let pause = Duration::from_millis(phase_ms);
    tokio::time::sleep(pause).await;

    phase.store(1, Ordering::Relaxed);
    kill9(fleet.gateways[0].as_mut().unwrap()).await;
    tokio::time::sleep(pause / 2).await;
    fleet.start_gateway(0).await;
    tokio::time::sleep(pause).await;

    phase.store(2, Ordering::Relaxed);
    kill9(fleet.ledger.as_mut().unwrap()).await;
    tokio::time::sleep(pause / 2).await;
    fleet.ledger = Some(fleet.deployment.ledger().await);
    tokio::time::sleep(pause).await;

    phase.store(3, Ordering::Relaxed);
    nats.stop();
    tokio::time::sleep(pause / 2).await;
    nats.restart().await;
    tokio::time::sleep(pause).await;

    phase.store(4, Ordering::Relaxed);
    for (i, id) in GATEWAYS.iter().enumerate() {
        let stopping = fleet.gateways[i].as_mut().unwrap();
        terminate(stopping).await;
        let exit = stopping.try_wait().unwrap();
        assert!(
            exit.is_some_and(|e| e.success()),
            "{id} stopped with {exit:?}"
        );
        fleet.start_gateway(i).await;
        tokio::time::sleep(pause / 2).await;
    }
    tokio::time::sleep(pause).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    sampler.await.unwrap();
    balancer.await.unwrap();

    // The books: every 200 once, nothing lost or doubled, reconcile clean.
    let served = seen.served.lock().unwrap().clone();
    let caught_up = Instant::now();
    let mut billed: HashMap<String, i64> = HashMap::new();
    // Up to three minutes: the catch-up time is a reported figure (it has
    // varied from under a second to over a minute on this 2-core machine
    // after the ledger's kill -9); what is asserted is that nothing is lost.
    for _ in 0..1_800 {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT request_id, COUNT(*) FROM requests WHERE account = $1 GROUP BY request_id",
        )
        .bind(&account)
        .fetch_all(&store.pool)
        .await
        .unwrap();
        billed = rows.into_iter().collect();
        if served.iter().all(|id| billed.contains_key(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up = caught_up.elapsed();
    let missing = served.iter().filter(|id| !billed.contains_key(*id)).count();
    let doubled = billed.values().filter(|&&n| n > 1).count();
    let unseen = billed.len().saturating_sub(served.len());
    let (reconciled, report) = fleet.deployment.run(&["reconcile"]).await;

    let mut backlog = backlog.lock().unwrap().clone();
    backlog.sort_unstable();
    let pick = |q: f64| {
        backlog
            .get(((backlog.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let phases = seen.phases.lock().unwrap().clone();
    println!("fleet drill: {clients} clients, {phase_ms} ms per phase, 3 gateways");
    for (name, tally) in PHASES.iter().zip(&phases) {
        println!(
            "  {name:<16} served {:>6}  refused {:?}  failed {}",
            tally.ok, tally.refused, tally.failed
        );
    }
    println!(
        "  served {} | billed {} | missing from the books {missing} | doubled {doubled} | billed but not seen as 200 {unseen}",
        served.len(),
        billed.len()
    );
    println!(
        "  ledger backlog under load (records): p50 {} p99 {} max {}; caught up {catch_up:?} after the load",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );

    // The revoked key and the opened breaker reach every gateway.
    let (revoke_ms, breaker_ms) = spread(&fleet, &browser, &urls).await;
    println!("  revoked key refused by all 3 gateways after {revoke_ms:?}");
    println!("  breaker opened on gw-1 open on all after {breaker_ms:?}");

    assert_eq!(missing, 0, "200s not in the books");
    assert_eq!(doubled, 0, "requests billed twice");
    assert!(reconciled, "{report}");
    assert!(report.contains("no usage is missing"), "{report}");
    let rolling = &phases[4];
    assert_eq!(
        (
            rolling.failed,
            rolling.refused.get(&503).copied().unwrap_or(0)
        ),
        (0, 0),
        "a rolling restart fails nothing: {rolling:?}"
    );
    assert!(
        phases.iter().all(|t| t.refused.keys().all(|s| *s == 503)),
        "only a gateway stopping may answer 503: {phases:?}"
    );
    assert!(
        revoke_ms < Duration::from_secs(1),
        "revoke took {revoke_ms:?}"
    );
    assert!(
        breaker_ms < Duration::from_secs(1),
        "breaker took {breaker_ms:?}"
    );
    drop(nats);
}

/// Revokes a fresh key on the control plane and opens gpt-4.1's breaker
/// on gw-1; how long until every gateway refused the key, and until every
/// gateway had the breaker open.
async fn spread(fleet: &Fleet, browser: &Browser, urls: &[String]) -> (Duration, Duration) {
    let http = reqwest::Client::new();
    let (status, created) = browser
        .api(
            reqwest::Method::POST,
            "/api/v1/keys",
            Some(serde_json::json!({"name": "short-lived"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let models =
        |url: &String, key: &String| http.get(format!("{url}/v1/models")).bearer_auth(key).send();
    for url in urls {
        let mut known = false;
        for _ in 0..500 {
            if models(url, &key).await.is_ok_and(|r| r.status() == 200) {
                known = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(known, "{url} never accepted the new key");
    }
    let (status, _) = browser
        .api(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    for url in urls {
        while models(url, &key).await.is_ok_and(|r| r.status() != 401)
            && revoked.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let revoke = revoked.elapsed();

    let faults = format!("{}/_sim/faults", fleet.sim);
    let rule = serde_json::json!({"provider": "openai", "model": "gpt-4.1", "status": 500});
    http.post(&faults).json(&rule).send().await.unwrap();
    let load_key = browser.create_key("breaker").await;
    let open = |url: String| {
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
            let models = report["models"].as_array()?.clone();
            Some(
                models
                    .iter()
                    .any(|m| m["model"] == "gpt-4.1" && m["state"] == "open"),
            )
        }
    };
    let mut tripped = None;
    for _ in 0..40 {
        let _ = http
            .post(format!("{}/v1/chat/completions", urls[0]))
            .bearer_auth(&load_key)
            .json(&serde_json::json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await;
        if open(urls[0].clone()).await == Some(true) {
            tripped = Some(Instant::now());
            break;
        }
    }
    let tripped = tripped.expect("gw-1's breaker opens");
    for url in &urls[1..] {
        while open(url.clone()).await != Some(true) && tripped.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let breaker = tripped.elapsed();
    http.delete(&faults).send().await.unwrap();
    (revoke, breaker)
}
