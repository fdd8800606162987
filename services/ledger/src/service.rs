//! The ledger service: a durable consumer that folds every event into the
//! store and publishes the account's state for the gateways.
//!
//! Per record, in order: decode; apply in one transaction (a repeat changes
//! nothing); publish the account's state to the `accounts` bucket; ack. A
//! crash anywhere before the ack means the record comes again, and applying
//! it again only republishes the state. A record this build cannot decode
//! is stored in `rejected_events` (reconciliation reports it) and acked, so
//! one bad record does not stop the books.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use eventlog::{Bucket, Consumer, Delivery, EventLog};
use events::{Envelope, ACCOUNTS_BUCKET};
use store::Store;

use crate::{projection, LedgerError};

/// The durable consumer's name.
pub const CONSUMER: &str = "ledger";
/// How long to wait for a record before checking for shutdown.
const POLL: Duration = Duration::from_millis(500);
/// The pause before reconnecting after the log or the store failed.
const BACKOFF: Duration = Duration::from_secs(1);

/// A running ledger's connections.
pub struct Ledger {
    log: Arc<dyn EventLog>,
    store: Store,
    accounts: Arc<dyn Bucket>,
}

impl Ledger {
    /// A ledger on `log` and `store` (migrated here).
    pub async fn new(log: Arc<dyn EventLog>, store: Store) -> Result<Ledger, LedgerError> {
        store.migrate().await?;
        let accounts = log.bucket(ACCOUNTS_BUCKET).await?;
        Ok(Ledger {
            log,
            store,
            accounts,
        })
    }

    /// Folds events until `stop` completes; survives log and store outages.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let result = tokio::select! {
                _ = &mut stop => return,
                result = self.follow() => result,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "ledger interrupted; retrying");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }

    /// Follows the log until an error.
    async fn follow(&self) -> Result<(), LedgerError> {
        let mut consumer = self.log.consumer(CONSUMER).await?;
        loop {
            self.step(consumer.as_mut()).await?;
        }
    }

    /// Applies at most one record; `true` if one came.
    pub async fn step(&self, consumer: &mut dyn Consumer) -> Result<bool, LedgerError> {
        let Some(delivery) = consumer.next(POLL).await? else {
            return Ok(false);
        };
        self.handle(delivery).await?;
        Ok(true)
    }

    async fn handle(&self, delivery: Delivery) -> Result<(), LedgerError> {
        let seq = delivery.record.seq;
        let envelope = match Envelope::decode(&delivery.record.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::error!(seq, error = %e, "unreadable event stored in rejected_events");
                projection::reject(&self.store, seq, &e.to_string()).await?;
                return Ok(delivery.ack().await?);
            }
        };
        let applied = projection::apply(&self.store, seq, &envelope).await?;
        let account = envelope.event.account();
        if let Some(state) =
            projection::state(&self.store, account, Utc::now().date_naive()).await?
        {
            let value = serde_json::to_vec(&state).map_err(|e| LedgerError::Data(e.to_string()))?;
            self.accounts.put(&account.to_string(), &value).await?;
        }
        if !applied {
            tracing::debug!(seq, id = %envelope.id, "event already applied");
        }
        Ok(delivery.ack().await?)
    }
}
