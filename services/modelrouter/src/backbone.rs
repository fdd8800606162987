//! The event backbone as the configuration describes it: the event log
//! (NATS, or SQLite in the data dir), the ledger's store (PostgreSQL, or
//! SQLite in the data dir), and the gateway's link to them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use control_plane::{Circuits, ControlPlane, Secrets};
use eventlog::nats::NatsLog;
use eventlog::sqlite::SqliteLog;
use eventlog::EventLog;
use events::{ACCOUNTS_BUCKET, KEYS_BUCKET, POLICIES_BUCKET};
use gateway::accounts::Accounts;
use gateway::follow::Source;
use gateway::probes::{Check, Probes};
use gateway::usage::Publisher;
use gateway::Gateway;
use store::Store;

use crate::config::Config;
use crate::serve::BoxError;

/// Demo credits granted to every new account in simulator mode.
pub const DEMO_CREDITS: &str = "25";

/// How a service opens the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The log must answer now (ledger, control plane, operator commands).
    Now,
    /// Connect in the background: a gateway starts and serves while the
    /// log is down, journaling usage until it is back.
    Eventually,
}

/// The configured event log.
pub async fn open_log(config: &Config, reach: Reach) -> Result<Arc<dyn EventLog>, BoxError> {
    match &config.event_log {
        Some(url) if url.starts_with("nats://") => {
            let log = match reach {
                Reach::Now => {
                    NatsLog::connect_replicated(url, &config.nats_prefix, config.nats_replicas)
                        .await
                }
                Reach::Eventually => {
                    NatsLog::lazy_replicated(url, &config.nats_prefix, config.nats_replicas).await
                }
            }
            .map_err(|e| format!("event log {url}: {e}"))?;
            Ok(Arc::new(log))
        }
        Some(other) => Err(format!(
            "event log `{other}`: use nats://host:port, or leave it unset for the embedded log"
        )
        .into()),
        None => {
            create_dir(&config.data_dir)?;
            let path = config.data_dir.join("events.db");
            let log = SqliteLog::open(&path)
                .await
                .map_err(|e| format!("embedded event log {}: {e}", path.display()))?;
            restrict_database(&path)?;
            Ok(Arc::new(log))
        }
    }
}

/// The configured store, migrated.
pub async fn open_store(config: &Config) -> Result<Store, BoxError> {
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => {
            create_dir(&config.data_dir)?;
            format!("sqlite:{}", config.data_dir.join("ledger.db").display())
        }
    };
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    if config.database_url.is_none() {
        restrict_database(&config.data_dir.join("ledger.db"))?;
    }
    Ok(store)
}

/// For an operator command that acts on a deployment's books (reconcile,
/// grant, export, a password reset): the embedded files it would read must
/// exist already. Run from the wrong directory, opening them would create
/// an empty data dir there instead, and the command would report on it
/// ("no usage is missing") or write to it (a grant no deployment reads).
pub fn existing_deployment(config: &Config) -> Result<(), BoxError> {
    let embedded = [
        config.event_log.is_none().then_some("events.db"),
        config.database_url.is_none().then_some("ledger.db"),
    ];
    for file in embedded.into_iter().flatten() {
        let path = config.data_dir.join(file);
        if !path.exists() {
            return Err(format!(
                "no deployment's data here: {} does not exist (a deployment's data dir \
                 holds it once `modelrouter up` has run). Run this where the deployment \
                 runs, or set MODELROUTER_DATA_DIR to its data dir \
                 (MODELROUTER_EVENT_LOG and MODELROUTER_DATABASE_URL for a fleet's)",
                path.display()
            )
            .into());
        }
    }
    Ok(())
}

/// Creates the data dir (0700), or makes an existing one the owner's only.
fn create_dir(dir: &Path) -> Result<(), BoxError> {
    gateway::files::create_private_dir(dir)
        .and_then(|()| gateway::files::restrict(dir))
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()).into())
}

/// Holds `data_dir/up.lock` for as long as the returned file lives (the
/// kernel lets go of it when the process ends, however it ends). A second
/// `up` on the same data dir would run a second publisher, ledger and
/// request log over the same books, so it is refused with the first one's pid.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, BoxError> {
    use std::io::Write;
    create_dir(dir)?;
    let path = dir.join("up.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let locked = match file.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => {
            // The first one may not have written its pid yet.
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = Some(holder.trim()).filter(|h| !h.is_empty());
            return Err(format!(
                "another `modelrouter up` (pid {}) is running on the data dir {}: stop it first",
                holder.unwrap_or("unknown"),
                dir.display()
            )
            .into());
        }
        // A filesystem without locks: SQLite's own locking still guards
        // the databases, so serve, but say what is not guarded.
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            tracing::warn!(path = %path.display(), "the data dir cannot be locked here: nothing stops a second `up` on it");
            false
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()).into());
        }
    };
    if locked {
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(file)
}

/// A SQLite database and its WAL files, the owner's only (0600).
fn restrict_database(path: &Path) -> Result<(), BoxError> {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        gateway::files::restrict(&file)
            .map_err(|e| format!("cannot restrict {}: {e}", file.display()))?;
    }
    Ok(())
}

/// The gateway's publisher (its usage journal in the data dir) and account
/// views on `log`.
pub async fn gateway_events(
    config: &Config,
    log: Arc<dyn EventLog>,
    probes: &mut Probes,
) -> Result<gateway::Events, BoxError> {
    create_dir(&config.data_dir)?;
    let publisher = Publisher::start(
        Arc::clone(&log),
        &config.data_dir,
        config.gateway_id.as_deref(),
        config.usage_linger(),
    )?;
    let accounts = Accounts::new(
        publisher.instance().to_owned(),
        config.gateway.accounts.clone(),
    );
    let source = Source::new(log, ACCOUNTS_BUCKET, Some(&config.data_dir));
    probes.flag(
        "account_views",
        source.loaded.clone(),
        "account states not loaded yet (event log unreachable and no saved copy)",
    );
    accounts.follow(source).await?;
    Ok(gateway::Events {
        publisher,
        accounts,
    })
}

/// A secret from the configuration, or else from `data_dir/secrets/NAME`,
/// generated there (readable by the owner only) on first use.
pub fn secret(
    config: &Config,
    name: &str,
    configured: Option<&String>,
) -> Result<Vec<u8>, BoxError> {
    if let Some(value) = configured {
        if value.len() < 32 {
            return Err(format!("the {name} secret must be at least 32 bytes").into());
        }
        return Ok(value.clone().into_bytes());
    }
    let dir = config.data_dir.join("secrets");
    create_dir(&dir)?;
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => return Err(format!("{} is shorter than 32 bytes", path.display()).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
    }
    let value = auth::random_secret_hex();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, value.as_bytes())?;
    file.sync_all()?;
    Ok(value.into_bytes())
}

/// The key hasher every gateway and the control plane of a deployment share.
pub fn key_hasher(config: &Config) -> Result<auth::KeyHasher, BoxError> {
    let secret = secret(config, "key-hash", config.key_hash_secret.as_ref())?;
    Ok(auth::KeyHasher::new(&secret)?)
}

/// Makes `gateway` follow the control plane's keys and provider blocks
/// (from the copies in the data dir while the log is unreachable).
pub async fn follow_access(
    config: &Config,
    log: &Arc<dyn EventLog>,
    gateway: &Gateway,
    probes: &mut Probes,
) -> Result<(), BoxError> {
    let dir = Some(config.data_dir.as_path());
    let keys = Source::new(Arc::clone(log), KEYS_BUCKET, dir);
    let policies = Source::new(Arc::clone(log), POLICIES_BUCKET, dir);
    probes
        .flag(
            "key_views",
            keys.loaded.clone(),
            "API keys not loaded yet (event log unreachable and no saved copy)",
        )
        .flag(
            "policy_views",
            policies.loaded.clone(),
            "provider blocks not loaded yet (event log unreachable and no saved copy)",
        );
    let (keys, policies) =
        tokio::join!(gateway.keys.follow(keys), gateway.policies.follow(policies),);
    keys?;
    policies?;
    Ok(())
}

/// Shares `gateway`'s circuit breakers and its keys' per-minute counts with
/// every other replica on `log` (this replica named by its gateway id).
pub async fn share_breakers(
    config: &Config,
    log: &Arc<dyn EventLog>,
    gateway: &Gateway,
    publisher: &Publisher,
) -> Result<(), BoxError> {
    gateway::health::fleet::share(
        &gateway.health,
        publisher.gateway(),
        publisher.instance(),
        Arc::clone(log),
        Arc::clone(&gateway.catalog),
        Some(&config.data_dir),
    )
    .await?;
    gateway::key_limits::share(&gateway.key_meter, publisher.instance(), Arc::clone(log));
    Ok(())
}

/// The readiness check "the event log answers".
pub fn log_check(log: &Arc<dyn EventLog>) -> Check {
    let log = Arc::clone(log);
    Arc::new(move || {
        let log = Arc::clone(&log);
        Box::pin(async move { log.last_seq().await.map(|_| ()).map_err(|e| e.to_string()) })
    })
}

/// The readiness check "the exporter follows the log and its store answers".
pub fn exporter_check(exporter: &Arc<exporter::Exporter>) -> Check {
    let exporter = Arc::clone(exporter);
    Arc::new(move || {
        let exporter = Arc::clone(&exporter);
        Box::pin(async move { exporter.ready().await })
    })
}

/// The readiness check "the store answers and every migration is applied".
pub fn store_check(store: &Store) -> Check {
    let store = store.clone();
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            match store.pending_migrations().await {
                Ok(0) => Ok(()),
                Ok(n) => Err(format!("{n} migrations not applied yet")),
                Err(e) => Err(e.to_string()),
            }
        })
    })
}

/// The simulator's controls in `up`: only with an operator's admin key.
pub struct Operators(pub Arc<ControlPlane>);

impl simulator::ControlAccess for Operators {
    fn check<'a>(
        &'a self,
        headers: &'a axum::http::HeaderMap,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::http::StatusCode> + Send + 'a>>
    {
        Box::pin(async move {
            let key = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let Some(key) = key else {
                return axum::http::StatusCode::UNAUTHORIZED;
            };
            match self.0.admin_key_member(key).await {
                Ok(Some(member)) if member.operator => axum::http::StatusCode::OK,
                Ok(Some(_)) => axum::http::StatusCode::FORBIDDEN,
                Ok(None) => axum::http::StatusCode::UNAUTHORIZED,
                Err(e) => {
                    tracing::error!(error = %e, "cannot check a simulator control key");
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        })
    }
}

/// Circuit states read from the gateway running in the same process.
struct GatewayCircuits(Arc<Gateway>);

impl Circuits for GatewayCircuits {
    fn state(&self, _provider: catalog::ProviderId, model: &str) -> events::CircuitState {
        self.0.health.circuit(model)
    }

    fn incidents(&self) -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
        self.0
            .health
            .incidents()
            .into_iter()
            .map(|i| (i.at, i.what))
            .collect()
    }
}

/// The control plane on `log` and `store`; `beside` is the gateway of the
/// same process, whose circuit states the models page shows.
pub async fn control_plane(
    config: &Config,
    log: Arc<dyn EventLog>,
    store: Store,
    catalog: Arc<catalog::CatalogHandle>,
    beside: Option<Arc<Gateway>>,
    demo_credits: bool,
) -> Result<Arc<ControlPlane>, BoxError> {
    let mut settings = config.control_plane.clone();
    if demo_credits && settings.demo_credits.is_none() {
        settings.demo_credits = Some(DEMO_CREDITS.to_owned());
    }
    let secrets = Secrets {
        key_hash: secret(config, "key-hash", config.key_hash_secret.as_ref())?,
        session: secret(config, "session", config.session_secret.as_ref())?,
        telemetry: Some(secret(
            config,
            "telemetry",
            config.telemetry_secret.as_ref(),
        )?),
    };
    let circuits = beside.map(|g| Arc::new(GatewayCircuits(g)) as Arc<dyn Circuits>);
    let payments = match stripe(config)? {
        Some(stripe) => Some(control_plane::billing::Payments {
            stripe,
            webhook_secrets: config.stripe.webhook_secrets.clone(),
            public_url: config.public_url(),
            limits: payments::Limits::default(),
        }),
        None => {
            tracing::warn!("card payments are off: no Stripe secret key (STRIPE_SECRET_KEY)");
            None
        }
    };
    Ok(ControlPlane::start(settings, secrets, log, store, catalog, circuits, payments).await?)
}

/// The exporter on `log` and `store`, delivering until `stop`.
pub async fn exporter(
    config: &Config,
    log: Arc<dyn EventLog>,
    store: Store,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Arc<exporter::Exporter>, BoxError> {
    let secret = secret(config, "telemetry", config.telemetry_secret.as_ref())?;
    let sealer = Arc::new(exporter::Sealer::new(&secret)?);
    Ok(exporter::Exporter::start(config.exporter.clone(), sealer, log, store, stop).await?)
}

/// The Stripe client of the configuration; `None` without a secret key.
pub fn stripe(config: &Config) -> Result<Option<payments::stripe::Stripe>, BoxError> {
    match payments::stripe::Stripe::new(&config.stripe) {
        Ok(stripe) => Ok(Some(stripe)),
        Err(payments::stripe::PaymentsError::NotConfigured) => Ok(None),
        Err(e) => Err(format!("stripe: {e}").into()),
    }
}

/// The ledger on `log` and `store`, charging auto-recharges when Stripe is configured.
pub async fn ledger(
    config: &Config,
    log: Arc<dyn EventLog>,
    store: Store,
) -> Result<ledger::Ledger, BoxError> {
    let ledger = ledger::Ledger::new(Arc::clone(&log), store.clone())
        .await?
        .with_linger(config.ledger_linger());
    Ok(match stripe(config)? {
        Some(stripe) => ledger.with_charger(ledger::payments::Charger::new(
            stripe,
            log,
            store,
            chrono::Duration::seconds(
                i64::try_from(config.ledger.recharge_retry_s).unwrap_or(i64::MAX / 2),
            ),
        )),
        None => ledger,
    })
}
