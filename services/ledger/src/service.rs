//! The ledger service: a durable consumer that folds every event into the
//! store and publishes the account's state for the gateways.
//!
//! A record holds one event or a publisher's batch of them. A batch is the
//! records that come within the linger after its first (up to 1,024 records
//! on SQLite, 2,048 on PostgreSQL, or 16 MiB). In order: decode them and
//! apply them with set-based statements (a repeat changes nothing; see
//! [`projection`]), in one transaction on SQLite and in two at once on
//! PostgreSQL, the events split by account; publish the touched accounts'
//! states to the `accounts` bucket in one go; ack the batch with one
//! confirmed ack. A crash anywhere before the acks means the records come
//! again, and applying them again only republishes the states. A few
//! statements and one commit per batch, not per event, is what makes
//! folding fast, and the publish and ack of one batch overlap the fold of
//! the next and the gathering of the one after ([`Pipeline`]), so the
//! store's writes rarely wait on the bucket or the log. A record this build
//! cannot decode is stored in `rejected_events` (reconciliation reports it)
//! and acked, so one bad record does not stop the books.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventlog::{Bucket, Consumer, Delivery, EventLog};
use events::{AccountId, Envelope, ACCOUNTS_BUCKET};
use store::{Backend, Store};

use crate::gather::{gather, Ahead, Gathered, BATCH_ON_POSTGRES, BATCH_ON_SQLITE};
use crate::projection::Claim;
use crate::{projection, sequences, LedgerError};

/// The durable consumer's name.
pub const CONSUMER: &str = "ledger";
/// How long to wait for a record before checking for shutdown.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// How long a batch gathers after its first record, by default. A batch
/// costs a transaction, a read and a publish of the states and, on SQLite,
/// a few dozen page writes and thread switches whatever its size: at 200
/// requests a second in `up`, 50 ms (about ten requests a batch) halves
/// the CPU a request costs against 10 ms. It is short against the gateways'
/// view of credit: a gateway adds its own spend the state does not hold
/// yet, so only other gateways' spend is seen this much later.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(50);
/// Transactions a batch folds in at once on PostgreSQL, its events split
/// by account, so the server folds on two cores. Every row the fold
/// updates in place belongs to one account, except one per gateway
/// (`gateway_sequences`, written last), so neither transaction waits on
/// the other before then. Each claims its own events: one that commits
/// while the other fails counts its events once when the batch comes
/// again. SQLite has one writer, so one transaction there.
const SHARDS_ON_POSTGRES: usize = 2;
/// The pause before reconnecting after the log or the store failed.
const BACKOFF: Duration = Duration::from_secs(1);
/// How often recharges in flight are looked at (besides right after a batch
/// starts one): the ones a crash or a Stripe outage left uncharged.
const RECHARGE_SCAN: Duration = Duration::from_secs(5);

/// A running ledger's connections.
pub struct Ledger {
    log: Arc<dyn EventLog>,
    store: Store,
    accounts: Arc<dyn Bucket>,
    /// Charges auto-recharges; `None` when card payments are not configured.
    charger: Option<crate::payments::Charger>,
    /// Woken when a batch starts a recharge.
    recharges: tokio::sync::Notify,
    /// Fold counters and how far the published states trail the events.
    lag: Arc<crate::lag::Lag>,
    /// How long a batch gathers after its first record.
    linger: Duration,
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
            charger: None,
            recharges: tokio::sync::Notify::new(),
            lag: Arc::default(),
            linger: Duration::ZERO,
        })
    }

    /// The ledger also charges auto-recharges, with `charger`.
    pub fn with_charger(mut self, charger: crate::payments::Charger) -> Ledger {
        self.charger = Some(charger);
        self
    }

    /// Each batch gathers records for `linger` after its first (or until
    /// it is full); without this, it takes what has arrived.
    pub fn with_linger(mut self, linger: Duration) -> Ledger {
        self.linger = linger;
        self
    }

    /// Fold counters and lag, for `/metrics`.
    pub fn lag(&self) -> Arc<crate::lag::Lag> {
        Arc::clone(&self.lag)
    }

    /// Folds events until `stop` completes, and checks every minute for
    /// lost usage (see [`crate::sequences`]); survives log and store outages.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        let folding = async {
            loop {
                if let Err(e) = self.follow().await {
                    tracing::warn!(error = %e, "ledger interrupted; retrying");
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        };
        let checking = async {
            let mut check = sequences::Check::default();
            let mut every = tokio::time::interval(sequences::EVERY);
            loop {
                every.tick().await;
                let found = check
                    .run(&self.store, Utc::now(), crate::reconcile::DEFAULT_GRACE)
                    .await;
                if let Err(e) = found {
                    tracing::warn!(error = %e, "cannot check the gateways' sequences");
                }
            }
        };
        let charging = async {
            let Some(charger) = &self.charger else {
                return std::future::pending().await;
            };
            let mut every = tokio::time::interval(RECHARGE_SCAN);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = self.recharges.notified() => {}
                }
                if let Err(e) = charger.drive().await {
                    tracing::warn!(error = %e, "cannot charge auto-recharges now");
                }
            }
        };
        tokio::select! {
            _ = stop => {}
            _ = folding => {}
            _ = checking => {}
            _ = charging => {}
        }
    }

    /// Folds what the log holds now, then returns (bounded by `within`): a
    /// process about to stop calls it, after its last appends, so the books
    /// it leaves behind match its log.
    pub async fn catch_up(&self, within: Duration) -> Result<(), LedgerError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut pipeline = self.pipeline(self.log.consumer(CONSUMER).await?);
        while pipeline.step().await? > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("stopping before the ledger folded the whole log; the rest folds at the next start");
                break;
            }
        }
        pipeline.flush().await
    }

    /// Follows the log until an error.
    async fn follow(&self) -> Result<(), LedgerError> {
        let mut pipeline = self.pipeline(self.log.consumer(CONSUMER).await?);
        loop {
            pipeline.step().await?;
        }
    }

    /// Folds `consumer`'s records batch by batch, each batch's states
    /// published while the next one gathers and folds.
    pub fn pipeline(&self, consumer: Box<dyn Consumer>) -> Pipeline<'_> {
        Pipeline {
            ledger: self,
            ahead: Ahead::start(consumer, self.linger, self.batch_records()),
            unpublished: None,
        }
    }

    /// Applies the records available now and those that come within the
    /// linger, up to a batch, in one transaction, then publishes their
    /// accounts' states and acks them; returns how many came (0 after
    /// waiting `POLL` for one). [`Ledger::pipeline`] does the same faster.
    pub async fn step(&self, consumer: &mut dyn Consumer) -> Result<usize, LedgerError> {
        let gathering = gather(consumer, POLL, self.linger, self.batch_records(), None);
        let Some(gathered) = gathering.await? else {
            return Ok(0);
        };
        let folded = self.handle(gathered).await?;
        let count = folded.batch.len();
        self.publish(folded).await?;
        Ok(count)
    }

    /// Applies `events` and stores `rejected` in one transaction, claiming
    /// the events' ids as `claim` says; `None` (nothing written) when
    /// [`Claim::AllNew`] met an event applied before.
    async fn fold(
        &self,
        events: &[(u64, Envelope)],
        rejected: &[(u64, String)],
        claim: Claim,
    ) -> Result<Option<projection::Applied>, LedgerError> {
        let mut tx = self.store.pool.begin().await?;
        for (seq, error) in rejected {
            projection::reject(&mut tx, *seq, error).await?;
        }
        let applied = projection::apply(&mut tx, events, claim).await?;
        if applied.is_some() {
            tx.commit().await?;
        }
        Ok(applied)
    }

    /// Records a batch holds at most on this ledger's store.
    fn batch_records(&self) -> usize {
        match self.store.backend {
            Backend::Postgres => BATCH_ON_POSTGRES,
            Backend::Sqlite => BATCH_ON_SQLITE,
        }
    }

    /// Transactions a batch folds in at once on this ledger's store.
    fn shards(&self) -> usize {
        match self.store.backend {
            Backend::Postgres => SHARDS_ON_POSTGRES,
            Backend::Sqlite => 1,
        }
    }

    /// Applies `events` and stores `rejected` in one transaction, claiming
    /// every id first and, when one was applied before, again naming the
    /// ones that were not.
    async fn fold_shard(
        &self,
        events: &[(u64, Envelope)],
        rejected: &[(u64, String)],
    ) -> Result<projection::Applied, LedgerError> {
        if events.is_empty() && rejected.is_empty() {
            return Ok(projection::Applied::default());
        }
        match self.fold(events, rejected, Claim::AllNew).await? {
            Some(applied) => Ok(applied),
            None => self
                .fold(events, rejected, Claim::New)
                .await?
                .ok_or_else(|| LedgerError::Data("a batch claimed twice".into())),
        }
    }

    /// Applies a gathered batch (each event still once, by id): on
    /// PostgreSQL in [`SHARDS_ON_POSTGRES`] transactions at once, its
    /// events split by account; on SQLite in one.
    async fn handle(&self, gathered: Gathered) -> Result<Folded, LedgerError> {
        let Gathered {
            batch,
            events,
            rejected,
            touched,
        } = gathered;
        for (seq, error) in &rejected {
            tracing::error!(seq, error, "unreadable event stored in rejected_events");
        }
        let stamped: Vec<DateTime<Utc>> = events.iter().map(|(_, e)| e.at).collect();
        let shards = self.shards();
        let mut parts: Vec<Vec<(u64, Envelope)>> = (0..shards).map(|_| Vec::new()).collect();
        for (seq, envelope) in events {
            let shard = envelope.event.account().0.as_u128() % shards as u128;
            parts[shard as usize].push((seq, envelope));
        }
        let folds = parts.iter().enumerate().map(|(i, part)| {
            let rejected: &[(u64, String)] = if i == 0 { &rejected } else { &[] };
            self.fold_shard(part, rejected)
        });
        let mut applied = projection::Applied::default();
        // Every shard runs to its end, even when another fails: none is
        // cut off between its commit and its result.
        for shard in futures_util::future::join_all(folds).await {
            let shard = shard?;
            applied.fresh += shard.fresh;
            applied.started.extend(shard.started);
        }
        if applied.fresh < stamped.len() {
            tracing::debug!(
                repeated = stamped.len() - applied.fresh,
                "events applied before (or not the ledger's) skipped"
            );
        }
        if !applied.started.is_empty() {
            self.recharges.notify_one();
        }
        Ok(Folded {
            touched: touched.into_iter().collect(),
            stamped,
            batch,
        })
    }

    /// Publishes the states of the accounts a committed batch touched (as
    /// they are now, which may include later batches), then acks it.
    async fn publish(&self, folded: Folded) -> Result<(), LedgerError> {
        self.publisher().publish(folded).await
    }

    fn publisher(&self) -> Publisher {
        Publisher {
            store: self.store.clone(),
            accounts: Arc::clone(&self.accounts),
            lag: Arc::clone(&self.lag),
        }
    }
}

/// A batch's publish on its own task, stopped if the step awaiting it is
/// dropped (the ledger stopping), so nothing is published for a pipeline
/// that is gone; the batch, unacked, comes again.
struct Publishing(tokio::task::JoinHandle<Result<(), LedgerError>>);

impl Drop for Publishing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What publishing a folded batch needs, owned: the pipeline runs each
/// publish on a task of its own, so reading and encoding the states uses
/// the other core while the next batch folds.
struct Publisher {
    store: Store,
    accounts: Arc<dyn Bucket>,
    lag: Arc<crate::lag::Lag>,
}

impl Publisher {
    /// Publishes the states of the accounts a committed batch touched (as
    /// they are now, which may include later batches), then acks it.
    async fn publish(self, folded: Folded) -> Result<(), LedgerError> {
        let states =
            projection::states(&self.store, &folded.touched, Utc::now().date_naive()).await?;
        let mut entries = Vec::with_capacity(states.len());
        for state in &states {
            let value = serde_json::to_vec(state).map_err(|e| LedgerError::Data(e.to_string()))?;
            entries.push((state.account.to_string(), value));
        }
        self.accounts.put_all(&entries).await?;
        let published = Utc::now();
        self.lag.batch(
            folded
                .stamped
                .iter()
                .map(|at| (published - *at).to_std().unwrap_or_default()),
        );
        Delivery::ack_all(folded.batch).await?;
        Ok(())
    }
}

/// A batch committed to the store whose accounts' states are not published
/// and whose records are not acked yet.
struct Folded {
    touched: Vec<AccountId>,
    /// When each of its events happened, for the lag.
    stamped: Vec<DateTime<Utc>>,
    batch: Vec<Delivery>,
}

/// Folds a consumer's records with batches in flight: while batch N's
/// states are read and published and its records acked, batch N+1 folds
/// and batch N+2 gathers ([`Ahead`]). Publishes stay in batch order, so a state published later is
/// never older, and acks stay in log order. A crash or an error loses
/// nothing: an unacked batch comes again and folds as a repeat.
pub struct Pipeline<'a> {
    ledger: &'a Ledger,
    ahead: Ahead,
    unpublished: Option<Folded>,
}

impl Pipeline<'_> {
    /// Gathers and folds a batch while publishing the previous one; returns
    /// how many records came (0 after waiting `POLL` for one).
    pub async fn step(&mut self) -> Result<usize, LedgerError> {
        let ledger = self.ledger;
        let publishing = self
            .unpublished
            .take()
            .map(|folded| Publishing(tokio::spawn(ledger.publisher().publish(folded))));
        let folded = match self.ahead.next(POLL).await {
            Ok(Some(gathered)) => ledger.handle(gathered).await.map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        if let Some(mut publishing) = publishing {
            (&mut publishing.0)
                .await
                .map_err(|e| LedgerError::Data(format!("publishing a batch: {e}")))??;
        }
        let folded = folded?;
        let count = folded.as_ref().map_or(0, |f| f.batch.len());
        self.unpublished = folded;
        Ok(count)
    }

    /// Publishes and acks the batch still in flight.
    pub async fn flush(&mut self) -> Result<(), LedgerError> {
        match self.unpublished.take() {
            Some(folded) => self.ledger.publish(folded).await,
            None => Ok(()),
        }
    }
}
