//! Starting the services: embedded (`up`) or one at a time.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use catalog::{Catalog, CatalogHandle, ProviderId};
use events::AccountId;
use gateway::keys::{self, KeyRing};
use gateway::probes::Probes;
use gateway::Gateway;
use simulator::Simulator;
use tokio::net::TcpListener;

use crate::backbone::{self, Reach};
use crate::books;
use crate::config::{Config, SimulatorMode};

/// Anything that stops a service from starting.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the simulator is mounted in embedded mode.
const SIM_MOUNT: &str = "/sim";
/// How long a stopping `up` lets its ledger fold the events appended last.
const LEDGER_CATCH_UP: Duration = Duration::from_secs(10);
/// The file under the data dir holding accepted key digests, one per line.
const KEYS_FILE: &str = "api-keys";

/// `modelrouter up`: gateway (and, without provider keys, the simulator) on one port.
pub async fn up(mut config: Config) -> Result<(), BoxError> {
    let _one_up = backbone::lock_data_dir(&config.data_dir)?;
    config.embedded_lingers();
    let catalog = open_catalog(&config)?;
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr()?;
    config
        .public_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let simulate = match config.simulator_mode {
        SimulatorMode::On => true,
        SimulatorMode::Off => false,
        SimulatorMode::Auto => !config.has_provider_keys(),
    };
    let mut sim = None;
    let mut stripe_simulated = false;
    if simulate {
        for provider in ProviderId::ALL {
            let path = simulator::base_path(provider);
            config
                .gateway
                .providers
                .entry(provider)
                .or_default()
                .simulated(
                    format!("http://{addr}{SIM_MOUNT}{path}"),
                    &config.simulator.api_key,
                    &config.simulator.aws_access_key_id,
                );
        }
        sim = Some(Simulator::new(
            config.simulator.clone(),
            Arc::clone(&catalog),
        ));
        stripe_simulated = simulate_stripe(&mut config, addr)?;
    }
    let log = backbone::open_log(&config, Reach::Now).await?;
    let store = backbone::open_store(&config).await?;
    let mut probes = Probes::new();
    probes
        .check("event_log", backbone::log_check(&log))
        .check("store", backbone::store_check(&store));
    let ledger = Arc::new(backbone::ledger(&config, Arc::clone(&log), store.clone()).await?);
    // The books (publisher, ledger, exporter) on their own thread: see `books`.
    let books = books::start()?;
    let ledger_task = {
        let ledger = Arc::clone(&ledger);
        books.spawn(async move { ledger.run(std::future::pending()).await })
    };
    let keys = Arc::new(KeyRing::new(backbone::key_hasher(&config)?));
    // Inside `books.enter()`, what the set-up spawns (the publisher's worker,
    // the account-state follower, the exporter) lands on the books thread.
    let events = {
        let _books = books.enter();
        backbone::gateway_events(&config, Arc::clone(&log), &mut probes).await?
    };
    let publisher = Arc::clone(&events.publisher);
    let accounts = Arc::clone(&events.accounts);
    let gateway = Gateway::with_events(
        config.gateway.clone(),
        Arc::clone(&catalog),
        keys,
        Some(events),
    )?;
    watch_auto_model(&config, &gateway);
    let exporter = {
        let _books = books.enter();
        backbone::exporter(
            &config,
            Arc::clone(&log),
            store.clone(),
            std::future::pending(),
        )
        .await?
    };
    probes.check("exporter", backbone::exporter_check(&exporter));
    let lag = ledger.lag();
    let _ = gateway.metrics_beside.set(Arc::new(move || {
        let mut text = lag.to_prometheus();
        text.push_str(&exporter.to_prometheus());
        text
    }));
    backbone::follow_access(&config, &log, &gateway, &mut probes).await?;
    backbone::share_breakers(&config, &log, &gateway, &publisher).await?;
    let control_plane = backbone::control_plane(
        &config,
        Arc::clone(&log),
        store,
        catalog,
        Some(Arc::clone(&gateway)),
        simulate,
    )
    .await?;
    let bootstrap = bootstrap_key()?;
    let demo_credits = control_plane.demo_credits();
    let first = control_plane
        .first_account(&config.first_user_email, bootstrap)
        .await?;
    if let Some(control_plane::ops::FirstAccount { key, .. }) = &first {
        // Serve once the gateway knows the key and the account's credit, so
        // the first request works.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let caller = loop {
            match gateway.keys.verify(&key.key) {
                Some(caller) => break Some(caller),
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                None => break None,
            }
        };
        let known = match caller {
            Some(caller) => {
                // With demo credits, until they are folded in too: the
                // account is opened before its grant is appended.
                accounts
                    .wait_for(caller.account, Duration::from_secs(10), |state| {
                        demo_credits.is_none() || state.balance > money::Money::ZERO
                    })
                    .await
            }
            None => false,
        };
        if !known {
            tracing::warn!("the first account is not known to the gateway yet; it will be shortly");
        }
    }
    let drain = Arc::clone(&gateway);
    let mut app = Router::new();
    if let Some(sim) = sim {
        if stripe_simulated {
            for secret in config.stripe.webhook_secrets.iter().take(1) {
                sim.stripe
                    .add_endpoint(&format!("http://{addr}/stripe/webhook"), secret);
            }
        }
        let operators = Arc::new(backbone::Operators(Arc::clone(&control_plane)));
        app = app.nest(SIM_MOUNT, simulator::guarded_router(sim, Some(operators)));
    }
    let app = app
        .merge(gateway::router(gateway))
        .merge(control_plane::router(control_plane));

    let mut banner = vec![format!("Model Router listening on http://{addr}")];
    if simulate {
        banner.push(format!("No provider API keys set: every provider is served by the built-in simulator at http://{addr}{SIM_MOUNT}"));
        if let Some(demo) = demo_credits {
            banner.push(format!(
                "New accounts get ${demo} of demo credits (simulator mode)"
            ));
        }
    }
    if stripe_simulated {
        banner.push(format!("Card payments go to the simulator's Stripe: add credits at http://{addr}/billing with test card 4242 4242 4242 4242"));
    }
    match &first {
        Some(first) => {
            banner.push(format!(
                "Dashboard: http://{addr}/login  email {}  password {}  (shown once; you choose your own at first login)",
                first.email, first.password
            ));
            banner.push(format!(
                "Operator admin key (shown once; the admin API, and the simulator's /sim/_sim controls): {}",
                first.admin_key.key
            ));
            let key = &first.key;
            banner.push(format!(
                "API key of the first account (shown once, stored as a keyed hash): {}",
                key.key
            ));
            banner.push(format!("Try: curl http://{addr}/v1/chat/completions -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"model\":\"economy\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'", key.key));
        }
        None => banner.push(format!(
            "Using the API keys and accounts stored in {}: log in at http://{addr}/login",
            config.data_dir.display()
        )),
    }
    print_banner(&banner);
    let served = serve(&config, listener, app, probes).await;
    drain.drain(config.gateway.total_timeout()).await;
    publisher.shutdown().await;
    ledger_task.abort();
    let _ = ledger_task.await;
    if let Err(e) = ledger.catch_up(LEDGER_CATCH_UP).await {
        tracing::warn!(error = %e, "the ledger could not fold the last events; they fold at the next start");
    }
    if let Err(e) = log.close().await {
        tracing::warn!(error = %e, "the last acks were not written; their records are read again at the next start");
    }
    served
}

/// `modelrouter gateway`: the gateway alone.
pub async fn gateway(config: Config) -> Result<(), BoxError> {
    let catalog = open_catalog(&config)?;
    let log = match &config.event_log {
        Some(_) => Some(backbone::open_log(&config, Reach::Eventually).await?),
        None => {
            tracing::warn!("no event log configured (MODELROUTER_EVENT_LOG): usage is not recorded and credit is not enforced");
            None
        }
    };
    // Ready once its views are loaded (from the log, or from the copies
    // saved in the data dir while the log is down: it serves then, and
    // journals usage until the log is back).
    let mut probes = Probes::new();
    let events = match &log {
        Some(log) => Some(backbone::gateway_events(&config, Arc::clone(log), &mut probes).await?),
        None => None,
    };
    let account = AccountId(uuid::Uuid::nil());
    let (keys, new_key) = load_keys(&config, account)?;
    let configured: Vec<String> = config
        .gateway
        .providers
        .iter()
        .filter(|(_, s)| s.api_key.is_some())
        .map(|(p, _)| p.to_string())
        .collect();
    if configured.is_empty() {
        tracing::warn!("no provider API key is set: every request will fail with 503 until one is");
    }
    let publisher = events.as_ref().map(|e| Arc::clone(&e.publisher));
    let gateway = Gateway::with_events(config.gateway.clone(), catalog, keys, events)?;
    watch_auto_model(&config, &gateway);
    if let (Some(log), Some(publisher)) = (&log, &publisher) {
        backbone::follow_access(&config, log, &gateway, &mut probes).await?;
        backbone::share_breakers(&config, log, &gateway, publisher).await?;
    }
    let listener = bind(config.listen).await?;
    let mut banner = vec![format!(
        "Model Router gateway listening on http://{} (providers: {})",
        listener.local_addr()?,
        configured.join(", ")
    )];
    if let Some(publisher) = &publisher {
        banner.push(format!(
            "Gateway id {} (usage journal in {})",
            publisher.gateway(),
            config.data_dir.join("usage").display()
        ));
    }
    if let Some(key) = new_key {
        banner.push(format!("API key (shown once): {key}"));
    }
    print_banner(&banner);
    let served = serve(
        &config,
        listener,
        gateway::router(Arc::clone(&gateway)),
        probes,
    )
    .await;
    gateway.drain(config.gateway.total_timeout()).await;
    if let Some(publisher) = publisher {
        publisher.shutdown().await;
    }
    served
}

/// `modelrouter control-plane`: the dashboard and admin API alone.
pub async fn control_plane(mut config: Config) -> Result<(), BoxError> {
    let catalog = open_catalog(&config)?;
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr()?;
    config
        .public_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let log = backbone::open_log(&config, Reach::Now).await?;
    let store = backbone::open_store(&config).await?;
    if config.key_hash_secret.is_none() {
        tracing::warn!("MODELROUTER_KEY_HASH_SECRET is not set: keys are hashed with a secret from the data dir, which the gateways must share");
    }
    let mut probes = Probes::new();
    probes
        .check("event_log", backbone::log_check(&log))
        .check("store", backbone::store_check(&store));
    let cp = backbone::control_plane(&config, log, store, catalog, None, false).await?;
    print_banner(&[format!(
        "Model Router control plane listening on http://{addr} (dashboard at /login, admin API at /api/v1, Stripe webhooks at /stripe/webhook)"
    )]);
    serve(&config, listener, control_plane::router(cp), probes).await
}

/// `modelrouter ledger`: the ledger alone, until interrupted, with its
/// probes (`/livez`, `/readyz`) and `/metrics` on the listen address.
pub async fn ledger(config: Config) -> Result<(), BoxError> {
    let log = backbone::open_log(&config, Reach::Now).await?;
    let store = backbone::open_store(&config).await?;
    let listener = bind(config.listen).await?;
    let mut probes = Probes::new();
    probes
        .check("event_log", backbone::log_check(&log))
        .check("store", backbone::store_check(&store));
    let ledger = backbone::ledger(&config, log, store).await?;
    let lag = ledger.lag();
    print_banner(&[format!(
        "Model Router ledger folding events, probes on http://{} (Ctrl-C stops it)",
        listener.local_addr()?
    )]);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let served = serve_until(
        &config,
        listener,
        metrics_route(move || lag.to_prometheus()),
        probes,
        stopped,
    );
    ledger.run(shutdown_signal()).await;
    let _ = stop.send(true);
    served.await??;
    Ok(())
}

/// `modelrouter exporter`: the exporter alone, until interrupted, with its
/// probes and `/metrics` on the listen address.
pub async fn exporter(config: Config) -> Result<(), BoxError> {
    let log = backbone::open_log(&config, Reach::Now).await?;
    let store = backbone::open_store(&config).await?;
    let listener = bind(config.listen).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let exporter = backbone::exporter(
        &config,
        log.clone(),
        store.clone(),
        turned_true(stopped.clone()),
    )
    .await?;
    let mut probes = Probes::new();
    probes
        .check("event_log", backbone::log_check(&log))
        .check("store", backbone::store_check(&store))
        .check("exporter", backbone::exporter_check(&exporter));
    print_banner(&[format!(
        "Model Router exporter sending request traces to tenants' OTLP backends, probes and /metrics on http://{} (Ctrl-C stops it)",
        listener.local_addr()?
    )]);
    let served = serve_until(
        &config,
        listener,
        metrics_route(move || exporter.to_prometheus()),
        probes,
        stopped,
    );
    shutdown_signal().await;
    let _ = stop.send(true);
    served.await??;
    Ok(())
}

/// A `/metrics` route answering `text()` in Prometheus' text format.
fn metrics_route(text: impl Fn() -> String + Clone + Send + Sync + 'static) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = text();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        gateway::health::PROMETHEUS_TEXT,
                    )],
                    text,
                )
            }
        }),
    )
}

/// Resolves once `flag` turns true (or its sender is gone).
async fn turned_true(mut flag: tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

/// Serves `router` and `probes` on `listener` in the background until
/// `stopped` turns true.
fn serve_until(
    config: &Config,
    listener: TcpListener,
    router: Router,
    probes: Probes,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let server = config.server.clone();
    tokio::spawn(async move {
        gateway::server::serve(listener, router, &server, probes, turned_true(stopped)).await
    })
}

/// `modelrouter grant`: publishes a `credits_granted` event.
pub async fn grant(
    config: Config,
    account: &str,
    amount: &str,
    reason: String,
) -> Result<(), BoxError> {
    let account: AccountId = account
        .parse()
        .map_err(|e| format!("--account `{account}`: {e}"))?;
    let amount: money::Money = amount
        .parse()
        .map_err(|e| format!("--amount `{amount}`: {e}"))?;
    if amount <= money::Money::ZERO {
        return Err("--amount must be positive".into());
    }
    backbone::existing_deployment(&config)?;
    let log = backbone::open_log(&config, Reach::Now).await?;
    let envelope = events::Envelope::new(events::Event::CreditsGranted(events::CreditsGranted {
        account,
        amount,
        reason,
    }));
    let appended = log
        .append(
            envelope.event.subject(),
            &envelope.id.to_string(),
            &envelope.encode(),
        )
        .await?;
    println!(
        "granted ${amount} to {account} (event {}, log record {})",
        envelope.id, appended.seq
    );
    Ok(())
}

/// `modelrouter migrate`: applies the store's migrations.
pub async fn migrate(config: Config) -> Result<(), BoxError> {
    let url = config.database_url.clone();
    backbone::open_store(&config).await?;
    println!(
        "migrations applied to {}",
        url.unwrap_or_else(|| "the embedded store".into())
    );
    Ok(())
}

/// Without a Stripe key of its own, `up` in simulator mode takes card
/// payments through the simulator's Stripe (test cards, hosted Checkout,
/// signed webhooks back to this process), so a deposit works end to end
/// with no setup. The webhook secret is generated once into the data dir.
/// Whether it did (a Stripe key of the deployment's own wins).
fn simulate_stripe(config: &mut Config, addr: std::net::SocketAddr) -> Result<bool, BoxError> {
    if config.stripe.secret_key.is_some() {
        return Ok(false);
    }
    let secret = backbone::secret(config, "stripe-webhook", None)?;
    config.stripe.secret_key = Some(simulator::stripe::SECRET_KEY.to_owned());
    config.stripe.api_base = Some(format!("http://{addr}{SIM_MOUNT}/stripe"));
    config.stripe.webhook_secrets = vec![format!("whsec_{}", String::from_utf8_lossy(&secret))];
    Ok(true)
}

/// `modelrouter reconcile`: replays the log and compares the books, looks
/// for lost usage (gaps in the gateways' sequences) and for usage still in
/// gateways' journals (reported by running gateways, or left in this data
/// dir); with `stripe`, matches the card payments with Stripe's records too;
/// an error if anything is wrong.
pub async fn reconcile(config: Config, stripe: bool) -> Result<(), BoxError> {
    let stripe = match stripe {
        true => Some(backbone::stripe(&config)?.ok_or(
            "reconcile --stripe needs Stripe's secret key (STRIPE_SECRET_KEY, or [stripe] secret_key)",
        )?),
        false => None,
    };
    backbone::existing_deployment(&config)?;
    let log = backbone::open_log(&config, Reach::Now).await?;
    let store = backbone::open_store(&config).await?;
    let audit =
        ledger::reconcile::audit(log.as_ref(), &store, ledger::reconcile::DEFAULT_GRACE).await?;
    let left = gateway::usage::journal::left_behind(&config.data_dir)?;
    print!("{audit}");
    let settlement = match &stripe {
        Some(stripe) => {
            let records = ledger::settlement::StripeRecords::fetch(stripe).await?;
            let settlement = ledger::settlement::compare(&audit.books, &records);
            print!("{settlement}");
            Some(settlement)
        }
        None => None,
    };
    let stripe_differs = settlement.map_or(0, |s| s.unmatched.len());
    for journal in &left {
        println!(
            "gateway {}: its journal in {} holds {} usage events ({} bytes) and no gateway runs on it: start a gateway on this data dir to send them",
            journal.gateway,
            config.data_dir.display(),
            journal.events,
            journal.bytes
        );
    }
    if audit.is_clean() && left.is_empty() && stripe_differs == 0 {
        let through = match audit.unfolded {
            0 => format!("through record {}", audit.through),
            _ => format!(
                "through the events folded by record {} of {}",
                audit.folded_through, audit.through
            ),
        };
        println!("the ledger matches the event log ({through}); no usage is missing");
        return Ok(());
    }
    let lost: u64 = audit
        .lost
        .values()
        .flat_map(|gaps| gaps.iter().map(ledger::gaps::Gap::len))
        .sum();
    Err(format!(
        "{} differences between the ledger and the event log, {lost} usage events lost, {} journals holding usage not in the log, {stripe_differs} card payments differing from Stripe",
        audit.differences.len(),
        audit.journals.iter().filter(|(_, stopped)| *stopped).count() + left.len()
    )
    .into())
}

/// `modelrouter user reset-password`: prints a one-time link for the user.
pub async fn reset_password(config: Config, email: &str) -> Result<(), BoxError> {
    backbone::existing_deployment(&config)?;
    let store = backbone::open_store(&config).await?;
    let token = control_plane::ops::create_password_reset(&store, email).await?;
    println!(
        "Password reset link for {email} (works once, for an hour): {}/reset/{token}",
        config.public_url()
    );
    Ok(())
}

/// `modelrouter ledger export`: the journal of `from`..=`to` as CSV.
pub async fn export(
    config: Config,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    out: Option<PathBuf>,
) -> Result<(), BoxError> {
    backbone::existing_deployment(&config)?;
    let store = backbone::open_store(&config).await?;
    let mut buffer = Vec::new();
    let rows = ledger::export::export(&store, None, from, to, &mut buffer).await?;
    match out {
        Some(path) => std::fs::write(&path, &buffer)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => std::io::stdout().write_all(&buffer)?,
    }
    tracing::info!(rows, "journal exported");
    Ok(())
}

/// `modelrouter simulator`: the provider simulator alone.
pub async fn simulator(config: Config, listen: SocketAddr) -> Result<(), BoxError> {
    let catalog = open_catalog(&config)?;
    let listener = bind(listen).await?;
    let addr = listener.local_addr()?;
    let mut banner = vec![format!(
        "Provider simulator listening on http://{addr} (API key: {})",
        config.simulator.api_key
    )];
    for provider in ProviderId::ALL {
        let path = simulator::base_path(provider);
        banner.push(format!("  {provider:<9} http://{addr}{path}"));
    }
    print_banner(&banner);
    let app = simulator::router(Simulator::new(config.simulator.clone(), catalog));
    serve(&config, listener, app, Probes::new()).await
}

/// `modelrouter probe`: GET `/livez` or `/readyz` on the local service at
/// `listen` (its port on 127.0.0.1 when it listens on every address).
pub async fn probe(listen: SocketAddr, which: &str) -> Result<(), BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !matches!(which, "livez" | "readyz") {
        return Err(format!("probe `{which}`: use livez or readyz").into());
    }
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /{which} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{addr}: no answer within 5 s"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    println!("{body}");
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{which}: {status}").into()),
    }
}

/// `modelrouter catalog check`.
pub fn check_catalog(path: Option<PathBuf>) -> Result<(), BoxError> {
    let catalog = match &path {
        Some(p) => Catalog::load(p)?,
        None => Catalog::builtin(),
    };
    let shown = path.map_or("the shipped catalog".to_owned(), |p| {
        p.display().to_string()
    });
    println!(
        "{shown}: {} providers, {} models — valid",
        catalog.providers().len(),
        catalog.models().len()
    );
    Ok(())
}

/// Prints start-up lines to stdout. A closed stdout (`modelrouter up | head -1`)
/// must not stop the server, so write errors are logged and otherwise ignored.
fn print_banner(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    let written = lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        tracing::warn!("could not print the start-up banner: {e}");
    }
}

/// Reloads `[gateway.auto] model` when it changes, as the catalog is.
fn watch_auto_model(config: &Config, gateway: &Gateway) {
    let poll = Duration::from_millis(config.catalog_poll_ms);
    gateway.auto_model.spawn_watcher(poll);
}

fn open_catalog(config: &Config) -> Result<Arc<CatalogHandle>, BoxError> {
    let handle = CatalogHandle::open(config.catalog.clone())?;
    handle.spawn_watcher(Duration::from_millis(config.catalog_poll_ms));
    Ok(handle)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BoxError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}").into())
}

/// The key ring from the data dir: one line per key, its digest and its
/// account (lines from before accounts existed, a digest alone, belong to
/// `account`). On first start (no stored key) a key is created —
/// `MODELROUTER_BOOTSTRAP_KEY` if set — for `account`, and returned to be
/// shown once.
fn load_keys(
    config: &Config,
    account: AccountId,
) -> Result<(Arc<KeyRing>, Option<String>), BoxError> {
    let data_dir = config.data_dir.as_path();
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let path = data_dir.join(KEYS_FILE);
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
    };
    let ring = Arc::new(KeyRing::new(backbone::key_hasher(config)?));
    let mut digests = Vec::new();
    for line in stored.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut parts = line.split_whitespace();
        let digest = parts.next().unwrap_or_default();
        let owner = match parts.next() {
            Some(id) => id
                .parse()
                .map_err(|_| format!("{}: `{id}` is not an account id", path.display()))?,
            None => account,
        };
        if !ring.insert_digest(digest, owner) {
            return Err(format!(
                "{} holds a line that is not a key digest: `{digest}`",
                path.display()
            )
            .into());
        }
        digests.push(digest.to_owned());
    }
    let bootstrap = bootstrap_key()?;
    let bootstrap_digest = bootstrap.as_deref().map(|k| ring.digest(k));
    let needed = digests.is_empty()
        || bootstrap_digest
            .as_ref()
            .is_some_and(|d| !digests.contains(d));
    if !needed {
        return Ok((ring, None));
    }
    let key = bootstrap.unwrap_or_else(keys::generate_key);
    let digest = ring.digest(&key);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    writeln!(file, "{digest} {account}")?;
    file.sync_all()?;
    ring.insert_digest(&digest, account);
    Ok((ring, Some(key)))
}

/// `MODELROUTER_BOOTSTRAP_KEY`, the API key a fresh installation starts
/// with instead of a generated one, when set and well formed.
fn bootstrap_key() -> Result<Option<String>, BoxError> {
    let key = std::env::var("MODELROUTER_BOOTSTRAP_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    match key {
        Some(key) if !keys::is_well_formed(&key) => Err(
            "MODELROUTER_BOOTSTRAP_KEY must look like mr_sk_ followed by at least 32 letters or digits"
                .into(),
        ),
        key => Ok(key),
    }
}

async fn serve(
    config: &Config,
    listener: TcpListener,
    app: Router,
    probes: Probes,
) -> Result<(), BoxError> {
    crate::memory::release_freed();
    gateway::server::serve(listener, app, &config.server, probes, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
}
