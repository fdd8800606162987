//! The fault table: the distributed deployment as separate processes (a
//! simulator, a ledger, a gateway) on a NATS server and a PostgreSQL
//! database of the test's own, under load, while one part fails: the ledger
//! killed with SIGKILL, NATS killed, NATS down across a gateway restart, the
//! gateway killed with SIGKILL, events too big for the server. For each:
//! requests served (the client got its answer), billed (in the ledger, by
//! `X-Request-Id`), lost (served, never billed) and doubled (billed twice).
//! Lost and doubled must be 0, and `reconcile` must find the books clean.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::backends::{OwnNats, TestDb};
use test_support::deployment::{kill9, terminate, url_in, Deployment, KEY};
use tokio::process::Child;

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");
/// Requests in flight at once.
const CONCURRENCY: usize = 8;

/// What a load phase got back: the request ids of answered requests.
#[derive(Default)]
struct Served(Mutex<Vec<String>>);

/// The deployment under test.
struct Fleet {
    deployment: Deployment,
    nats: OwnNats,
    sim: String,
    _sim: Child,
    ledger: Child,
    gateway: Child,
    url: String,
    http: reqwest::Client,
    store: store::Store,
}

impl Fleet {
    async fn start(max_payload: Option<usize>) -> (Fleet, TestDb) {
        let nats = match max_payload {
            Some(bytes) => OwnNats::with_max_payload(bytes).await,
            None => OwnNats::start().await,
        };
        let db = TestDb::new().await;
        let deployment = Deployment::new(BIN, &nats.url, &db.url);
        let (sim_child, sim) = deployment.simulator().await;
        let ledger = deployment.ledger().await;
        let (ok, text) = deployment
            .run(&[
                "grant",
                "--account",
                &uuid::Uuid::nil().to_string(),
                "--amount",
                "1000",
            ])
            .await;
        assert!(ok, "{text}");
        let (gateway, url) = Fleet::start_gateway(&deployment, &sim).await;
        let store = store::Store::connect(&db.url).await.unwrap();
        let fleet = Fleet {
            deployment,
            nats,
            sim,
            _sim: sim_child,
            ledger,
            gateway,
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            store,
        };
        fleet.wait_served().await;
        (fleet, db)
    }

    /// A gateway on the data dir `gw` (its id adopted from the journal there).
    async fn start_gateway(deployment: &Deployment, sim: &str) -> (Child, String) {
        // Breakers off: every request tries every failing candidate, so the
        // oversize events stay oversize.
        let config = deployment.dir.0.join("gateway.toml");
        std::fs::write(&config, "[gateway.breaker]\nenabled = false\n").unwrap();
        let mut command = deployment.gateway_command("gw", sim);
        command.env("MODELROUTER_CONFIG", &config);
        command
            .env("XAI_API_KEY", "sim-key")
            .env("XAI_BASE_URL", format!("{sim}/xai/v1"));
        for (provider, path) in [("ANTHROPIC", "anthropic"), ("GEMINI", "google")] {
            command
                .env(format!("{provider}_API_KEY"), "sim-key")
                .env(format!("{provider}_BASE_URL"), format!("{sim}/{path}"));
        }
        let (child, line) = deployment.start(command, "listening").await;
        (child, url_in(&line))
    }

    async fn restart_gateway(&mut self) {
        let (gateway, url) = Fleet::start_gateway(&self.deployment, &self.sim).await;
        self.gateway = gateway;
        self.url = url;
    }

    /// Waits (bounded) until the gateway serves a paid request.
    async fn wait_served(&self) {
        for _ in 0..500 {
            if self.one(&Served::default(), 0, "gpt-4.1").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the gateway never served");
    }

    /// One request; whether it was answered (its id noted in `served`).
    async fn one(&self, served: &Served, n: usize, model: &str) -> bool {
        let body = serde_json::json!({"model": model, "prefer": "quality",
            "messages": [{"role": "user", "content": format!("Fault table question {n}")}]});
        let response = self
            .http
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await;
        let Ok(response) = response else {
            return false;
        };
        if response.status() != 200 {
            return false;
        }
        let id = test_support::header(&response, "x-request-id");
        // Answered means the whole body arrived.
        if response.bytes().await.is_err() {
            return false;
        }
        served.0.lock().unwrap().push(id);
        true
    }

    /// `count` requests, `CONCURRENCY` at a time.
    async fn load(self: &Arc<Self>, served: &Arc<Served>, count: usize, model: &'static str) {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY {
            let (fleet, served, next) = (Arc::clone(self), Arc::clone(served), Arc::clone(&next));
            workers.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= count {
                        return;
                    }
                    fleet.one(&served, n, model).await;
                }
            }));
        }
        for worker in workers {
            let _ = worker.await;
        }
    }

    /// Request id → times billed, for the ids in `served`, once the ledger
    /// has them all (bounded: 90 s).
    async fn billed(&self, served: &[String]) -> BTreeMap<String, i64> {
        let wanted: BTreeSet<&String> = served.iter().collect();
        let mut found = BTreeMap::new();
        for _ in 0..900 {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT request_id, COUNT(*) FROM requests WHERE outcome <> 'failed' GROUP BY request_id",
            )
            .fetch_all(&self.store.pool)
            .await
            .unwrap();
            found = rows
                .into_iter()
                .filter(|(id, _)| wanted.contains(id))
                .collect();
            if found.len() == wanted.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found
    }
}

/// One row of the table.
struct Row {
    scenario: &'static str,
    served: usize,
    billed: usize,
    lost: usize,
    doubled: usize,
}

async fn tally(fleet: &Fleet, scenario: &'static str, served: &Served) -> Row {
    let served: Vec<String> = served.0.lock().unwrap().clone();
    let billed = fleet.billed(&served).await;
    let lost = served.iter().filter(|id| !billed.contains_key(*id)).count();
    let doubled = billed.values().filter(|&&n| n > 1).count();
    Row {
        scenario,
        served: served.len(),
        billed: billed.len(),
        lost,
        doubled,
    }
}

/// Load in three phases: `break_it` after the first, `mend_it` after the second.
async fn scenario<B, M>(fleet: Fleet, name: &'static str, break_it: B, mend_it: M) -> (Fleet, Row)
where
    B: AsyncFnOnce(&mut Fleet),
    M: AsyncFnOnce(&mut Fleet),
{
    let served = Arc::new(Served::default());
    let mut fleet = fleet;
    let shared = Arc::new(fleet);
    shared.load(&served, 100, "gpt-4.1").await;
    fleet = Arc::into_inner(shared).expect("load finished");
    break_it(&mut fleet).await;
    let shared = Arc::new(fleet);
    shared.load(&served, 100, "gpt-4.1").await;
    fleet = Arc::into_inner(shared).expect("load finished");
    mend_it(&mut fleet).await;
    let shared = Arc::new(fleet);
    shared.load(&served, 100, "gpt-4.1").await;
    fleet = Arc::into_inner(shared).expect("load finished");
    let row = tally(&fleet, name, &served).await;
    (fleet, row)
}

fn print(rows: &[Row]) {
    eprintln!("| fault | served | billed | lost | doubled |");
    eprintln!("|---|---|---|---|---|");
    for r in rows {
        eprintln!(
            "| {} | {} | {} | {} | {} |",
            r.scenario, r.served, r.billed, r.lost, r.doubled
        );
    }
}

async fn reconcile_is_clean(fleet: &Fleet) {
    let (ok, text) = fleet.deployment.run(&["reconcile"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("the ledger matches the event log"), "{text}");
}

#[tokio::test]
async fn nothing_served_goes_unbilled_whatever_fails() {
    let (fleet, _db) = Fleet::start(None).await;
    let mut rows = Vec::new();

    let (fleet, row) = scenario(
        fleet,
        "ledger kill -9",
        async |f: &mut Fleet| kill9(&mut f.ledger).await,
        async |f: &mut Fleet| f.ledger = f.deployment.ledger().await,
    )
    .await;
    rows.push(row);

    let (fleet, row) = scenario(
        fleet,
        "NATS kill -9",
        async |f: &mut Fleet| f.nats.stop(),
        async |f: &mut Fleet| f.nats.restart().await,
    )
    .await;
    rows.push(row);

    // The gateway stops cleanly while NATS is down, and starts again while
    // it is still down: it must serve from its saved views and send both
    // runs' usage once NATS is back.
    let (fleet, row) = scenario(
        fleet,
        "NATS down, gateway restarted during it",
        async |f: &mut Fleet| {
            f.nats.stop();
            terminate(&mut f.gateway).await;
            f.restart_gateway().await;
        },
        async |f: &mut Fleet| f.nats.restart().await,
    )
    .await;
    rows.push(row);

    // The gateway is killed with requests in flight and started again.
    let (mut fleet, row) = {
        let served = Arc::new(Served::default());
        let shared = Arc::new(fleet);
        shared.load(&served, 100, "gpt-4.1").await;
        let load = {
            let (shared, served) = (Arc::clone(&shared), Arc::clone(&served));
            tokio::spawn(async move { shared.load(&served, 200, "gpt-4.1").await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let pid = shared.gateway.id().expect("gateway pid");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let _ = load.await;
        let mut fleet = Arc::into_inner(shared).expect("load finished");
        let _ = fleet.gateway.wait().await;
        fleet.restart_gateway().await;
        let shared = Arc::new(fleet);
        shared.load(&served, 100, "gpt-4.1").await;
        let fleet = Arc::into_inner(shared).expect("load finished");
        let row = tally(&fleet, "gateway kill -9 mid-load", &served).await;
        (fleet, row)
    };
    rows.push(row);
    reconcile_is_clean(&fleet).await;
    print(&rows);
    for row in &rows {
        assert_eq!(row.lost, 0, "{}: served and not billed", row.scenario);
        assert_eq!(row.doubled, 0, "{}: billed twice", row.scenario);
        assert!(
            row.served >= 200,
            "{}: served only {}",
            row.scenario,
            row.served
        );
    }
    terminate(&mut fleet.gateway).await;
}

#[tokio::test]
async fn events_too_big_for_the_server_are_slimmed_and_billed() {
    // 1.5 KB messages at most; each event carries the failed attempts of
    // the standard tier's OpenAI, Anthropic and Google models (seven), each
    // with a proxy's HTML error page (about 2 KB), before grok-3 answers.
    let (fleet, _db) = Fleet::start(Some(1536)).await;
    let page = format!(
        "<html><body>{}</body></html>",
        "<p>502 Bad Gateway: the upstream proxy could not reach the model.</p>".repeat(40)
    );
    for provider in ["anthropic", "openai", "google"] {
        let response = fleet
            .http
            .post(format!("{}/_sim/faults", fleet.sim))
            .json(&serde_json::json!({"provider": provider, "status": 502, "body": page}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let served = Arc::new(Served::default());
    let shared = Arc::new(fleet);
    shared.load(&served, 150, "standard").await;
    let mut fleet = Arc::into_inner(shared).expect("load finished");
    let row = tally(&fleet, "oversize events (1.5 KB max_payload)", &served).await;
    print(std::slice::from_ref(&row));
    assert_eq!(row.served, 150);
    assert_eq!((row.lost, row.doubled), (0, 0));
    reconcile_is_clean(&fleet).await;
    terminate(&mut fleet.gateway).await;
}
