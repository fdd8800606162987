//! The ledger's side of card payments: it charges the saved card of every
//! auto-recharge in flight (see [`crate::recharge`]) and records how it
//! went, as events the fold then applies. A charge is sent with its
//! recharge's id as the idempotency key, so sending it again (after a
//! crash, an outage, or before the outcome was folded) returns the same
//! PaymentIntent; the outcome events have ids derived from the payment and
//! the recharge, so a repeat adds nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use eventlog::EventLog;
use events::{AccountId, DepositSettled, Envelope, Event, RechargeDeclined};
use money::Money;
use payments::stripe::{Charged, Stripe};
use payments::Deposit;
use sqlx::Row;
use store::Store;
use uuid::Uuid;

use crate::LedgerError;

/// Charges auto-recharges.
pub struct Charger {
    stripe: Stripe,
    log: Arc<dyn EventLog>,
    store: Store,
    /// How long after a decline the next recharge may start.
    retry_after: chrono::Duration,
    /// Recharges whose outcome is in the log but not folded yet.
    reported: Mutex<HashSet<Uuid>>,
}

/// One recharge in flight.
struct InFlight {
    account: AccountId,
    recharge: Uuid,
    customer: String,
    payment_method: String,
    amount: Money,
}

impl Charger {
    /// A charger using `stripe`, recording on `log`; a decline waits
    /// `retry_after` before the next recharge may start.
    pub fn new(
        stripe: Stripe,
        log: Arc<dyn EventLog>,
        store: Store,
        retry_after: chrono::Duration,
    ) -> Charger {
        Charger {
            stripe,
            log,
            store,
            retry_after,
            reported: Mutex::default(),
        }
    }

    /// Charges every recharge in flight whose outcome is not yet recorded.
    pub async fn drive(&self) -> Result<(), LedgerError> {
        let in_flight = self.in_flight().await?;
        {
            let mut reported = self
                .reported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            reported.retain(|r| in_flight.iter().any(|f| f.recharge == *r));
        }
        for recharge in in_flight {
            let done = self
                .reported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&recharge.recharge);
            if done {
                continue;
            }
            match self.charge(&recharge).await {
                Ok(()) => {
                    self.reported
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(recharge.recharge);
                }
                Err(e) => tracing::warn!(
                    account = %recharge.account,
                    recharge = %recharge.recharge,
                    error = %e,
                    "auto-recharge not charged yet; trying again shortly"
                ),
            }
        }
        Ok(())
    }

    async fn in_flight(&self) -> Result<Vec<InFlight>, LedgerError> {
        let rows = sqlx::query(
            "SELECT account, in_flight, customer, payment_method, charging FROM auto_recharge
             WHERE in_flight IS NOT NULL",
        )
        .fetch_all(&self.store.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let account: String = row.try_get("account")?;
            let recharge: String = row.try_get("in_flight")?;
            let (Some(customer), Some(payment_method)) = (
                row.try_get::<Option<String>, _>("customer")?,
                row.try_get::<Option<String>, _>("payment_method")?,
            ) else {
                continue;
            };
            let (Ok(account), Ok(recharge)) = (account.parse(), recharge.parse()) else {
                continue;
            };
            out.push(InFlight {
                account,
                recharge,
                customer,
                payment_method,
                amount: Money::from_nanos(row.try_get("charging")?),
            });
        }
        Ok(out)
    }

    /// Charges one recharge and appends its outcome.
    async fn charge(&self, r: &InFlight) -> Result<(), LedgerError> {
        let credits = r.amount.cents().ok_or_else(|| {
            LedgerError::Data(format!(
                "auto-recharge amount {} is not whole cents",
                r.amount
            ))
        })?;
        let deposit = Deposit::of(credits);
        let charged = self
            .stripe
            .charge_off_session(
                &r.customer,
                &r.payment_method,
                deposit,
                &format!("mr-recharge-{}", r.recharge),
                &[
                    ("account", r.account.to_string()),
                    ("kind", "recharge".to_owned()),
                    ("recharge", r.recharge.to_string()),
                ],
            )
            .await
            .map_err(|e| LedgerError::Data(e.to_string()))?;
        let envelope = match charged {
            Charged::Succeeded { payment_intent } => {
                tracing::info!(account = %r.account, %payment_intent, credits = %credits, "auto-recharge paid");
                Envelope {
                    id: events::deposit_event_id(&payment_intent),
                    at: Utc::now(),
                    event: Event::DepositSettled(DepositSettled {
                        account: r.account,
                        credits: deposit.credits.money(),
                        fee: deposit.fee.money(),
                        payment: payment_intent,
                        recharge: Some(r.recharge),
                    }),
                }
            }
            Charged::Declined {
                payment_intent,
                code,
                message,
            } => {
                tracing::warn!(account = %r.account, %code, %message, "auto-recharge declined");
                Envelope {
                    id: events::billing_event_id("recharge_declined", &r.recharge.to_string()),
                    at: Utc::now(),
                    event: Event::RechargeDeclined(RechargeDeclined {
                        account: r.account,
                        recharge: r.recharge,
                        payment_intent,
                        code,
                        message,
                        retry_at: Some(Utc::now() + self.retry_after),
                    }),
                }
            }
        };
        self.log
            .append(
                envelope.event.subject(),
                &envelope.id.to_string(),
                &envelope.encode(),
            )
            .await?;
        Ok(())
    }
}
