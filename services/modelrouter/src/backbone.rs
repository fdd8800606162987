//! The event backbone as the configuration describes it: the event log
//! (NATS, or SQLite in the data dir), the ledger's store (PostgreSQL, or
//! SQLite in the data dir), and the gateway's link to them.

use std::path::Path;
use std::sync::Arc;

use eventlog::nats::NatsLog;
use eventlog::sqlite::SqliteLog;
use eventlog::EventLog;
use events::{AccountId, AccountOpened, CreditsGranted, Envelope, Event, ACCOUNTS_BUCKET};
use gateway::accounts::Accounts;
use gateway::usage::Publisher;
use store::Store;

use crate::config::Config;
use crate::serve::BoxError;

/// Demo credits granted to the first account in simulator mode.
pub const DEMO_CREDITS: &str = "25";

/// The configured event log.
pub async fn open_log(config: &Config) -> Result<Arc<dyn EventLog>, BoxError> {
    match &config.event_log {
        Some(url) if url.starts_with("nats://") => {
            let log = NatsLog::connect(url, &config.nats_prefix)
                .await
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
    Ok(store)
}

fn create_dir(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()).into())
}

/// The gateway's publisher and account views on `log`.
pub async fn gateway_events(
    config: &Config,
    log: Arc<dyn EventLog>,
) -> Result<gateway::Events, BoxError> {
    let id = config
        .gateway_id
        .clone()
        .unwrap_or_else(|| format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let spool = config.data_dir.join(format!("usage-{id}.spool"));
    let publisher = Publisher::start(Arc::clone(&log), &spool, id.clone())
        .map_err(|e| format!("usage spool {}: {e}", spool.display()))?;
    let accounts = Accounts::new(id, config.gateway.accounts.clone());
    accounts.follow(log.bucket(ACCOUNTS_BUCKET).await?);
    Ok(gateway::Events {
        publisher,
        accounts,
    })
}

/// The account of this installation's keys, created on first start (with
/// demo credits in simulator mode). Publishing is idempotent: the events'
/// ids derive from the account, so a restart changes nothing.
pub async fn local_account(
    config: &Config,
    log: &dyn EventLog,
    demo_credits: bool,
) -> Result<AccountId, BoxError> {
    let path = config.data_dir.join("account");
    let account = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| format!("{} does not hold an account id: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let account = AccountId::new();
            std::fs::write(&path, format!("{account}\n"))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            account
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
    };
    let mut events = vec![(
        "opened",
        Event::AccountOpened(AccountOpened {
            account,
            name: "local".into(),
        }),
    )];
    if demo_credits {
        events.push((
            "demo-credits",
            Event::CreditsGranted(CreditsGranted {
                account,
                amount: DEMO_CREDITS.parse()?,
                reason: "demo credits (simulator mode)".into(),
            }),
        ));
    }
    for (what, event) in events {
        let mut envelope = Envelope::new(event);
        envelope.id = uuid::Uuid::new_v5(&account.0, what.as_bytes());
        log.append(
            envelope.event.subject(),
            &envelope.id.to_string(),
            &envelope.encode(),
        )
        .await?;
    }
    Ok(account)
}
