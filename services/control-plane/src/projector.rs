//! Folds access events (and account openings) into the control plane's
//! tables, and publishes what gateways need into the `keys` and `policies`
//! buckets.
//!
//! A change is appended to the event log first, then applied here at once
//! by the request that made it (so the next page shows it); the projector's
//! durable consumer applies every event as well, which covers a crash
//! between the two and other control-plane replicas. Applying is idempotent
//! by event id, and the bucket values are whole states, so a repeat
//! rewrites the same value; a state is read and put under one lock (per
//! process and, on PostgreSQL, per database), so a state read before a
//! change is never put after the change's own.

use std::sync::Arc;
use std::time::Duration;

use eventlog::{Bucket, EventLog};
use events::{AccountId, Envelope, Event, KeyView, PolicyView, KEYS_BUCKET, POLICIES_BUCKET};
use sqlx::Row;
use store::Store;
use tokio::sync::Notify;

use crate::error::CpError;

/// The projector's durable consumer name.
const CONSUMER: &str = "control-plane";
/// Records not ours (usage, most of the log) are acked together: at most
/// this many at once …
const SKIPPED_ACKS: usize = 256;
/// … and at most this long after the first of them came.
const SKIPPED_WAIT: Duration = Duration::from_millis(100);

/// The database-wide lock held while a view is read and put ("mr-views").
pub const VIEWS_LOCK: i64 = 0x6d72_2d76_6965_7773;
/// How long a publish waits for [`VIEWS_LOCK`] before it fails (and its
/// event is applied again): a replica stopped mid-publish holds it until
/// PostgreSQL drops its session.
const VIEWS_WAIT: Duration = Duration::from_secs(10);

/// The control plane's projection and the buckets it feeds.
pub struct Projector {
    store: Store,
    keys: Arc<dyn Bucket>,
    policies: Arc<dyn Bucket>,
    /// Woken when an alert may have been raised, for the deliverer.
    alerts_raised: Arc<Notify>,
    /// Held while a view is read and put: the request that made a change
    /// and the durable consumers (of every replica) all publish, and a read
    /// taken before the change but put after it would leave the bucket with
    /// the old view. Within a process this lock, across replicas
    /// [`VIEWS_LOCK`].
    publishing: tokio::sync::Mutex<()>,
}

impl Projector {
    /// A projector writing `store` and `log`'s buckets.
    pub async fn new(log: &dyn EventLog, store: Store) -> Result<Projector, CpError> {
        Ok(Projector {
            store,
            keys: log.bucket(KEYS_BUCKET).await?,
            policies: log.bucket(POLICIES_BUCKET).await?,
            alerts_raised: Arc::default(),
            publishing: tokio::sync::Mutex::new(()),
        })
    }

    /// Applies `envelope` if it is the control plane's and not yet applied,
    /// then republishes the views it touches.
    pub async fn apply(&self, envelope: &Envelope) -> Result<(), CpError> {
        self.fold_in(envelope).await?;
        self.publish(&envelope.event).await
    }

    /// [`Projector::apply`] for the request that appended `envelope`: a
    /// view that cannot be stored now is only logged, since the change is
    /// in the log and in the tables (the next page shows it) and the
    /// durable consumer stores the view once it can. An error here would
    /// tell the user nothing changed, and a repeat would do it twice.
    pub async fn apply_now(&self, envelope: &Envelope) -> Result<(), CpError> {
        self.fold_in(envelope).await?;
        if let Err(e) = self.publish(&envelope.event).await {
            tracing::warn!(error = %e, event = %envelope.id, "the gateways' view of a change is not stored yet; the projector's consumer stores it");
        }
        Ok(())
    }

    /// Folds `envelope` into the tables unless applied before.
    async fn fold_in(&self, envelope: &Envelope) -> Result<(), CpError> {
        let at = envelope.at.to_rfc3339();
        let mut tx = self.store.pool.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO access_applied (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(envelope.id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if fresh {
            fold(&mut tx, &envelope.event, &at).await?;
        }
        tx.commit().await?;
        if fresh && matches!(envelope.event, Event::RechargeDeclined(_)) {
            self.alerts_raised.notify_one();
        }
        Ok(())
    }

    /// Woken when an alert may have been raised (committed with its
    /// deliveries), so the deliverer sends it at once instead of polling.
    pub(crate) fn alerts_raised(&self) -> &Arc<Notify> {
        &self.alerts_raised
    }

    async fn publish(&self, event: &Event) -> Result<(), CpError> {
        let Some(view) = View::of(event) else {
            return Ok(());
        };
        let _publishing = self.publishing.lock().await;
        let replicas = self.store.exclusive(VIEWS_LOCK, VIEWS_WAIT).await?;
        match view {
            View::Key(digest) => self.publish_key(digest).await?,
            View::KeyById { account, key } => {
                let digest: Option<String> = sqlx::query_scalar(
                    "SELECT digest FROM api_keys WHERE account = $1 AND id = $2",
                )
                .bind(account.to_string())
                .bind(key)
                .fetch_optional(&self.store.pool)
                .await?;
                if let Some(digest) = digest {
                    self.publish_key(&digest).await?;
                }
            }
            View::Policy(account) => self.publish_policy(account).await?,
        }
        replicas.release().await?;
        Ok(())
    }

    async fn publish_key(&self, digest: &str) -> Result<(), CpError> {
        let row = sqlx::query(
            "SELECT id, account, revoked_at, expires_at, rpm, tpm, allowed, budget, budget_period
             FROM api_keys WHERE digest = $1 AND kind = 'api'",
        )
        .bind(digest)
        .fetch_optional(&self.store.pool)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let account: String = row.try_get("account")?;
        let view = KeyView {
            account: account
                .parse()
                .map_err(|e| CpError::Internal(format!("api_keys.account: {e}")))?,
            key: row.try_get("id")?,
            revoked: row.try_get::<Option<String>, _>("revoked_at")?.is_some(),
            limits: crate::ops::keys::limits_of(&row)?,
        };
        let bytes = serde_json::to_vec(&view).map_err(|e| CpError::Internal(e.to_string()))?;
        self.keys.put(digest, &bytes).await?;
        Ok(())
    }

    async fn publish_policy(&self, account: AccountId) -> Result<(), CpError> {
        let blocked: Vec<String> = sqlx::query_scalar(
            "SELECT provider FROM provider_blocks WHERE account = $1 ORDER BY provider",
        )
        .bind(account.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        let captures: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM telemetry_destinations WHERE account = $1 AND capture_content = 1",
        )
        .bind(account.to_string())
        .fetch_one(&self.store.pool)
        .await?;
        let view = PolicyView {
            blocked,
            capture_content: captures > 0,
        };
        let bytes = serde_json::to_vec(&view).map_err(|e| CpError::Internal(e.to_string()))?;
        self.policies.put(&account.to_string(), &bytes).await?;
        Ok(())
    }

    /// Applies every event of `log` as it arrives, until `stop` resolves.
    pub async fn run(
        self: Arc<Self>,
        log: Arc<dyn EventLog>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let consumer = tokio::select! {
                _ = &mut stop => return,
                c = log.consumer(CONSUMER) => c,
            };
            let mut consumer = match consumer {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "control plane cannot consume the event log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match self.follow(consumer.as_mut(), stop.as_mut()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "control plane projector stopped; reading again from its first unacked record");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Applies records of `consumer` until `stop` resolves (`Ok`), the log
    /// fails, or a record of ours cannot be applied: the caller then opens
    /// the consumer again, which starts at that record (a reader that
    /// carried on would ack past it, and neither log delivers it again to
    /// the same opening). Usage records, most of the log and none of ours,
    /// are skipped without decoding and acked in batches (one confirmed ack
    /// each, see [`eventlog::Delivery::ack_all`]) before the next record of
    /// ours is applied, so acks stay in log order.
    async fn follow(
        &self,
        consumer: &mut dyn eventlog::Consumer,
        mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<(), CpError> {
        let mut skipped = Vec::new();
        let mut since = tokio::time::Instant::now();
        loop {
            let wait = if skipped.is_empty() {
                Duration::from_secs(1)
            } else {
                SKIPPED_WAIT.saturating_sub(since.elapsed())
            };
            let next = tokio::select! {
                _ = stop.as_mut() => {
                    if let Err(e) = eventlog::Delivery::ack_all(skipped).await {
                        tracing::debug!(error = %e, "skipped records not acked; they come again (harmless)");
                    }
                    return Ok(());
                }
                n = consumer.next(wait) => n?,
            };
            let Some(delivery) = next else {
                eventlog::Delivery::ack_all(std::mem::take(&mut skipped)).await?;
                continue;
            };
            let subject = delivery.record.subject.as_str();
            // Billing records carry declined recharges, which alert.
            let ours = subject == events::subjects::ACCESS
                || subject == events::subjects::ACCOUNT
                || subject == events::subjects::BILLING;
            if !ours {
                if skipped.is_empty() {
                    since = tokio::time::Instant::now();
                }
                skipped.push(delivery);
                if skipped.len() >= SKIPPED_ACKS || since.elapsed() >= SKIPPED_WAIT {
                    eventlog::Delivery::ack_all(std::mem::take(&mut skipped)).await?;
                }
                continue;
            }
            eventlog::Delivery::ack_all(std::mem::take(&mut skipped)).await?;
            self.apply_record(&delivery.record.payload).await?;
            if let Err(e) = delivery.ack().await {
                tracing::warn!(error = %e, "ack failed; the record will be applied again (harmless)");
            }
        }
    }

    /// Applies a log record's events (an unreadable one is skipped here:
    /// the ledger keeps it).
    async fn apply_record(&self, payload: &[u8]) -> Result<(), CpError> {
        for decoded in Envelope::decode_all(payload) {
            let envelope = match decoded {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "control plane cannot read an event; skipping it here (the ledger keeps it)");
                    continue;
                }
            };
            if !concerns_us(&envelope.event) {
                continue;
            }
            self.apply(&envelope).await?;
        }
        Ok(())
    }
}

/// The gateways' view an event changes.
enum View<'a> {
    /// The key of this digest, in the `keys` bucket.
    Key(&'a str),
    /// The key of this id, found by its account.
    KeyById { account: AccountId, key: &'a str },
    /// The account's blocks and capture, in the `policies` bucket.
    Policy(AccountId),
}

impl<'a> View<'a> {
    fn of(event: &'a Event) -> Option<View<'a>> {
        match event {
            Event::KeyIssued(k) if !k.admin => Some(View::Key(&k.digest)),
            Event::KeyRevoked(k) => Some(View::Key(&k.digest)),
            Event::KeyLimitsSet(k) => Some(View::KeyById {
                account: k.account,
                key: &k.key,
            }),
            Event::ProviderBlocked(b) | Event::ProviderUnblocked(b) => {
                Some(View::Policy(b.account))
            }
            Event::TelemetryDestinationSet(d) => Some(View::Policy(d.account)),
            Event::TelemetryDestinationRemoved(r) => Some(View::Policy(r.account)),
            _ => None,
        }
    }
}

/// Access events, accounts opened, and declined recharges (which alert).
fn concerns_us(event: &Event) -> bool {
    matches!(event, Event::AccountOpened(_) | Event::RechargeDeclined(_))
        || event.subject() == events::subjects::ACCESS
}

async fn fold(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event: &Event,
    at: &str,
) -> Result<(), CpError> {
    let query = |sql| sqlx::query::<sqlx::Any>(sql);
    match event {
        Event::AccountOpened(o) => {
            query("INSERT INTO accounts (id, name, opened_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
                .bind(o.account.to_string()).bind(&o.name).bind(at)
                .execute(&mut **tx).await?;
        }
        Event::MemberInvited(i) => {
            query(
                "INSERT INTO invitations (id, account, email, role, token_digest, created_at, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(i.invitation.to_string())
            .bind(i.account.to_string())
            .bind(&i.email)
            .bind(i.role.as_str())
            .bind(&i.token_digest)
            .bind(at)
            .bind(i.expires_at.map(|t| t.to_rfc3339()))
            .execute(&mut **tx)
            .await?;
        }
        Event::InvitationWithdrawn(w) => {
            query("UPDATE invitations SET withdrawn_at = $3 WHERE account = $1 AND id = $2 AND withdrawn_at IS NULL")
                .bind(w.account.to_string())
                .bind(w.invitation.to_string())
                .bind(at)
                .execute(&mut **tx)
                .await?;
        }
        Event::MemberRemoved(r) => {
            query("DELETE FROM members WHERE account = $1 AND user_id = $2")
                .bind(r.account.to_string())
                .bind(r.user.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Event::MemberJoined(j) => {
            query("INSERT INTO members (account, user_id, email, role, joined_at) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (account, user_id) DO UPDATE SET role = excluded.role")
                .bind(j.account.to_string()).bind(j.user.to_string()).bind(&j.email).bind(j.role.as_str()).bind(at)
                .execute(&mut **tx).await?;
            if let Some(invitation) = j.invitation {
                query("UPDATE invitations SET accepted_by = $2 WHERE id = $1")
                    .bind(invitation.to_string())
                    .bind(j.user.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Event::MemberRoleSet(r) => {
            query("UPDATE members SET role = $3 WHERE account = $1 AND user_id = $2")
                .bind(r.account.to_string())
                .bind(r.user.to_string())
                .bind(r.role.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Event::KeyIssued(k) => {
            query("INSERT INTO api_keys (id, account, name, digest, prefix, last_four, kind, created_at, created_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING")
                .bind(&k.key).bind(k.account.to_string()).bind(&k.name).bind(&k.digest)
                .bind(&k.prefix).bind(&k.last_four).bind(if k.admin { "admin" } else { "api" }).bind(at)
                .bind(k.by.map(|u| u.to_string()))
                .execute(&mut **tx).await?;
        }
        Event::AlertRulesSet(r) => {
            let rules = serde_json::to_string(&r.rules)
                .map_err(|e| CpError::Internal(format!("alert rules: {e}")))?;
            query("INSERT INTO alert_rules (account, rules, updated_at) VALUES ($1, $2, $3)
                   ON CONFLICT (account) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at")
                .bind(r.account.to_string()).bind(rules).bind(at)
                .execute(&mut **tx).await?;
        }
        Event::RechargeDeclined(d) => {
            let rules = crate::alerts::rules_on(tx, d.account).await?;
            if let Some(rules) = rules.filter(|r| r.recharge_failed) {
                crate::alerts::fire(
                    tx,
                    crate::alerts::Alert {
                        account: d.account,
                        dedupe: format!("recharge:{}:{}", d.recharge, d.code),
                        kind: "recharge_failed",
                        message: format!(
                            "An auto-recharge was declined: {} ({}).",
                            d.message, d.code
                        ),
                        rules: &rules,
                    },
                )
                .await?;
            }
        }
        Event::KeyLimitsSet(k) => {
            let l = &k.limits;
            query("UPDATE api_keys SET expires_at = $3, rpm = $4, tpm = $5, allowed = $6, budget = $7, budget_period = $8
                   WHERE account = $1 AND id = $2")
                .bind(k.account.to_string()).bind(&k.key)
                .bind(l.expires_at.map(|t| t.to_rfc3339()))
                .bind(l.rpm.map(i64::from)).bind(l.tpm.map(i64::from))
                .bind(l.allowed.join("\n"))
                .bind(l.budget.map(|b| b.amount.nanos()))
                .bind(l.budget.map(|b| b.period.as_str()))
                .execute(&mut **tx).await?;
        }
        Event::KeyRevoked(k) => {
            query("UPDATE api_keys SET revoked_at = $3 WHERE account = $1 AND id = $2 AND revoked_at IS NULL")
                .bind(k.account.to_string()).bind(&k.key).bind(at)
                .execute(&mut **tx).await?;
        }
        Event::ProviderBlocked(b) => {
            query("INSERT INTO provider_blocks (account, provider) VALUES ($1, $2) ON CONFLICT (account, provider) DO NOTHING")
                .bind(b.account.to_string()).bind(&b.provider)
                .execute(&mut **tx).await?;
        }
        Event::ProviderUnblocked(b) => {
            query("DELETE FROM provider_blocks WHERE account = $1 AND provider = $2")
                .bind(b.account.to_string())
                .bind(&b.provider)
                .execute(&mut **tx)
                .await?;
        }
        Event::TelemetryDestinationSet(d) => {
            query(
                "INSERT INTO telemetry_destinations
                   (id, account, name, preset, protocol, endpoint, header_names, headers_sealed, sampling, capture_content, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, preset = excluded.preset,
                   protocol = excluded.protocol, endpoint = excluded.endpoint, header_names = excluded.header_names,
                   headers_sealed = excluded.headers_sealed, sampling = excluded.sampling,
                   capture_content = excluded.capture_content, updated_at = excluded.updated_at
                 WHERE telemetry_destinations.account = excluded.account",
            )
            .bind(d.destination.to_string())
            .bind(d.account.to_string())
            .bind(&d.name)
            .bind(d.preset.as_deref())
            .bind(d.protocol.as_str())
            .bind(&d.endpoint)
            .bind(to_json(&d.header_names))
            .bind(&d.headers_sealed)
            .bind(to_json(&d.sampling))
            .bind(i64::from(d.capture_content))
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Event::TelemetryDestinationRemoved(r) => {
            query("DELETE FROM telemetry_destinations WHERE account = $1 AND id = $2")
                .bind(r.account.to_string())
                .bind(r.destination.to_string())
                .execute(&mut **tx)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// A value's JSON for a text column (these types always serialize).
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}
