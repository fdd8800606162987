//! Money in: deposits through Stripe Checkout (credits plus the 4% fee,
//! the fee its own line item and its own journal line), a saved card for
//! auto-recharge, and Stripe's webhooks turned into billing events.
//!
//! Every billing change is an event; the ledger folds them (balances, the
//! journal, deposits, auto-recharge) and the pages read its tables. A
//! webhook is verified, turned into its event(s), appended to the log, and
//! only then answered 2xx, so Stripe retries what was not recorded. Event
//! ids derive from the payment, refund step or dispute they report
//! ([`events::deposit_event_id`], [`events::billing_event_id`]): a webhook
//! delivered twice, replayed, or arriving before an earlier one changes
//! nothing twice.

use events::{
    AccountId, AutoRechargeSet, CardRemoved, CardSaved, DepositReinstated, DepositReversed,
    DepositSettled, Envelope, Event, PaymentCustomerSet, Reversal,
};
use money::{Cents, Money};
use payments::stripe::{Checkout, Stripe};
use payments::webhook::{Notice, StripeEvent};
use payments::{Deposit, Limits};
use sqlx::Row;

use crate::error::CpError;
use crate::ops::Member;
use crate::ControlPlane;

/// Card payments as the control plane makes them.
pub struct Payments {
    /// The Stripe client (Checkout, saved cards, the account's customer).
    pub stripe: Stripe,
    /// Webhook endpoint secrets: the current one first, then any still
    /// accepted during a rotation.
    pub webhook_secrets: Vec<String>,
    /// Where the dashboard is reached (Checkout returns there).
    pub public_url: String,
    /// The smallest and largest deposit.
    pub limits: Limits,
}

/// Why a webhook was not taken (Stripe sees the status).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not signed by Stripe with one of our secrets (400: never retried usefully).
    #[error("bad signature: {0}")]
    Signature(#[from] payments::signature::SignatureError),
    /// Not an event, or one missing what it needs (400).
    #[error("{0}")]
    Unreadable(#[from] payments::webhook::WebhookError),
    /// Card payments are not configured here (503).
    #[error("card payments are not configured")]
    NotConfigured,
    /// It concerns a deposit the ledger has not folded yet, or the log or
    /// Stripe failed: 503, so Stripe sends it again later.
    #[error("{0}")]
    Retry(String),
}

/// The account's auto-recharge as its owner sees it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AutoRecharge {
    pub enabled: bool,
    pub threshold: Money,
    pub amount: Money,
    /// `brand •••• last4` of the saved card.
    pub card: Option<String>,
    pub declines: u32,
    pub last_decline: Option<String>,
    /// A recharge is being charged now.
    pub charging: bool,
}

impl ControlPlane {
    fn payments(&self) -> Result<&Payments, CpError> {
        self.payments.as_ref().ok_or_else(|| {
            CpError::Unavailable(
                "Card payments are not configured on this deployment (no Stripe key).".into(),
            )
        })
    }

    /// Whether card payments are configured.
    pub fn takes_payments(&self) -> bool {
        self.payments.is_some()
    }

    /// The deposit limits.
    pub fn deposit_limits(&self) -> Limits {
        self.payments.as_ref().map(|p| p.limits).unwrap_or_default()
    }

    /// The account's auto-recharge (the ledger's fold of its events).
    pub async fn auto_recharge_of(&self, account: AccountId) -> Result<AutoRecharge, CpError> {
        let state = ledger::recharge::load(&self.store.pool, &account.to_string()).await?;
        Ok(AutoRecharge {
            enabled: state.enabled,
            threshold: state.threshold,
            amount: state.amount,
            card: match (&state.brand, &state.last4, &state.payment_method) {
                (Some(brand), Some(last4), Some(_)) => Some(format!("{brand} •••• {last4}")),
                _ => None,
            },
            declines: state.declines,
            last_decline: state.last_decline,
            charging: state.in_flight.is_some(),
        })
    }

    /// The account's customer at Stripe, created (and recorded) when it has none.
    async fn customer(&self, member: &Member) -> Result<String, CpError> {
        let known = ledger::recharge::load(&self.store.pool, &member.account.to_string())
            .await?
            .customer;
        if let Some(customer) = known {
            return Ok(customer);
        }
        let customer = self
            .payments()?
            .stripe
            .create_customer(&member.account.to_string(), &member.email)
            .await
            .map_err(payment_error)?;
        self.record(Event::PaymentCustomerSet(PaymentCustomerSet {
            account: member.account,
            customer: customer.clone(),
        }))
        .await?;
        Ok(customer)
    }

    /// Reads a typed deposit amount against the limits.
    pub fn deposit_of(&self, amount: &str) -> Result<Deposit, CpError> {
        Deposit::parse(amount, self.deposit_limits()).map_err(|e| CpError::BadInput(e.to_string()))
    }

    /// Starts a deposit of `amount` (owners): the Checkout page to pay at.
    pub async fn start_deposit(
        &self,
        member: &Member,
        amount: &str,
    ) -> Result<(Deposit, Checkout), CpError> {
        member.require_owner()?;
        let deposit = self.deposit_of(amount)?;
        let payments = self.payments()?;
        let customer = self.customer(member).await?;
        let base = &payments.public_url;
        let checkout = payments
            .stripe
            .checkout_deposit(
                &customer,
                &member.account.to_string(),
                deposit,
                &format!("{base}/billing?deposit=paid"),
                &format!("{base}/billing?deposit=cancelled"),
            )
            .await
            .map_err(payment_error)?;
        Ok((deposit, checkout))
    }

    /// Starts saving a card (owners): the Checkout page (setup mode).
    pub async fn start_card_setup(&self, member: &Member) -> Result<Checkout, CpError> {
        member.require_owner()?;
        let payments = self.payments()?;
        let customer = self.customer(member).await?;
        let base = &payments.public_url;
        payments
            .stripe
            .checkout_setup(
                &customer,
                &member.account.to_string(),
                &format!("{base}/billing?card=saved"),
                &format!("{base}/billing?card=cancelled"),
            )
            .await
            .map_err(payment_error)
    }

    /// Removes the saved card (owners): detached at Stripe, and auto-recharge off.
    pub async fn remove_card(&self, member: &Member) -> Result<(), CpError> {
        member.require_owner()?;
        let state = ledger::recharge::load(&self.store.pool, &member.account.to_string()).await?;
        let Some(method) = state.payment_method else {
            return Err(CpError::NotFound);
        };
        if let Err(e) = self.payments()?.stripe.forget_card(&method).await {
            // Already gone at Stripe is fine; anything else is retried by the user.
            tracing::warn!(error = %e, "could not detach the card at Stripe");
        }
        self.record(Event::CardRemoved(CardRemoved {
            account: member.account,
            payment_method: method,
        }))
        .await?;
        // The ledger keeps the card: the next request must see none.
        self.folded(member.account, |s| s.card.is_none()).await?;
        Ok(())
    }

    /// Read-your-writes for settings the ledger keeps: waits (up to 2 s)
    /// until the account's auto-recharge state, as folded, satisfies
    /// `done`; returns it if it does.
    async fn folded(
        &self,
        account: AccountId,
        done: impl Fn(&AutoRecharge) -> bool,
    ) -> Result<Option<AutoRecharge>, CpError> {
        for _ in 0..100 {
            let state = self.auto_recharge_of(account).await?;
            if done(&state) {
                return Ok(Some(state));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(None)
    }

    /// Sets auto-recharge (owners): on needs a saved card; the amount is a
    /// deposit's (within the limits); the threshold a non-negative amount.
    /// The settings as they are once the ledger folds the change.
    pub async fn set_auto_recharge(
        &self,
        member: &Member,
        enabled: bool,
        threshold: &str,
        amount: &str,
    ) -> Result<AutoRecharge, CpError> {
        member.require_owner()?;
        let threshold = Cents::parse_usd(threshold)
            .ok()
            .filter(|t| t.0 >= 0)
            .ok_or_else(|| {
                CpError::BadInput(format!(
                    "`{}` is not a threshold in USD, like 5 or 2.50.",
                    crate::echo(threshold.trim())
                ))
            })?;
        let deposit = self.deposit_of(amount)?;
        let current = self.auto_recharge_of(member.account).await?;
        if enabled && current.card.is_none() {
            return Err(CpError::BadInput(
                "Save a card first: auto-recharge charges it.".into(),
            ));
        }
        self.record(Event::AutoRechargeSet(AutoRechargeSet {
            account: member.account,
            enabled,
            threshold: threshold.money(),
            amount: deposit.credits.money(),
        }))
        .await?;
        // The page after this one reads the ledger's fold: wait for it.
        let (threshold, amount) = (threshold.money(), deposit.credits.money());
        let folded = self
            .folded(member.account, |s| {
                s.enabled == enabled && s.threshold == threshold && s.amount == amount
            })
            .await?;
        // Else as the ledger's fold will have it (settings forgive declines).
        Ok(folded.unwrap_or(AutoRecharge {
            enabled,
            threshold,
            amount,
            declines: 0,
            ..current
        }))
    }

    /// Takes a webhook: verified, turned into events, appended; only then Ok.
    pub async fn stripe_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<(), WebhookError> {
        let payments = self.payments.as_ref().ok_or(WebhookError::NotConfigured)?;
        payments::signature::verify(
            payload,
            signature,
            &payments.webhook_secrets,
            chrono::Utc::now().timestamp(),
        )?;
        let event = StripeEvent::parse(payload)?;
        let notice = event.notice()?;
        for envelope in self.envelopes(payments, notice).await? {
            self.log
                .append(
                    envelope.event.subject(),
                    &envelope.id.to_string(),
                    &envelope.encode(),
                )
                .await
                .map_err(|e| WebhookError::Retry(e.to_string()))?;
        }
        tracing::info!(event = %event.id, kind = %event.kind, "stripe webhook recorded");
        Ok(())
    }

    /// The events a notice means, with ids derived from what they report.
    async fn envelopes(
        &self,
        payments: &Payments,
        notice: Notice,
    ) -> Result<Vec<Envelope>, WebhookError> {
        let now = chrono::Utc::now();
        let envelope = |id, event| Envelope { id, at: now, event };
        Ok(match notice {
            Notice::DepositPaid {
                payment_intent,
                account,
                credits,
                fee,
                ..
            } => vec![envelope(
                events::deposit_event_id(&payment_intent),
                Event::DepositSettled(DepositSettled {
                    account: parse_account(&account)?,
                    credits: credits.money(),
                    fee: fee.money(),
                    payment: payment_intent,
                    recharge: None,
                }),
            )],
            Notice::RechargePaid {
                payment_intent,
                metadata,
                ..
            } => {
                let tag = |k: &str| metadata.get(k).cloned().unwrap_or_default();
                let cents = |k: &str| {
                    tag(k).parse().map(Cents).map_err(|_| {
                        WebhookError::Retry(format!("recharge {payment_intent} has no {k}"))
                    })
                };
                vec![envelope(
                    events::deposit_event_id(&payment_intent),
                    Event::DepositSettled(DepositSettled {
                        account: parse_account(&tag("account"))?,
                        credits: cents("credits_cents")?.money(),
                        fee: cents("fee_cents")?.money(),
                        payment: payment_intent,
                        recharge: tag("recharge").parse().ok(),
                    }),
                )]
            }
            Notice::CardSaved {
                session,
                account,
                customer,
                setup_intent,
            } => {
                let card = payments
                    .stripe
                    .saved_card(&setup_intent)
                    .await
                    .map_err(|e| WebhookError::Retry(e.to_string()))?;
                vec![envelope(
                    events::billing_event_id("card_saved", &session),
                    Event::CardSaved(CardSaved {
                        account: parse_account(&account)?,
                        customer,
                        payment_method: card.payment_method,
                        brand: card.brand,
                        last4: card.last4,
                    }),
                )]
            }
            Notice::Refunded {
                charge,
                payment_intent,
                refunded,
                before,
            } => {
                let Some(deposit) = self.deposit(payments, &payment_intent).await? else {
                    return Ok(Vec::new());
                };
                let reference = format!("{charge}:refunded:{}", refunded.0);
                let (credits, fee) = deposit.split_step(before, refunded);
                vec![envelope(
                    events::billing_event_id("refund", &reference),
                    Event::DepositReversed(DepositReversed {
                        account: deposit.account,
                        payment: payment_intent,
                        reference,
                        credits,
                        fee,
                        reason: Reversal::Refund,
                    }),
                )]
            }
            Notice::DisputeOpened {
                dispute,
                payment_intent,
                amount,
            } => {
                let Some(deposit) = self.deposit(payments, &payment_intent).await? else {
                    return Ok(Vec::new());
                };
                let (credits, fee) = deposit.split_step(Cents(0), amount);
                vec![envelope(
                    events::billing_event_id("dispute", &dispute),
                    Event::DepositReversed(DepositReversed {
                        account: deposit.account,
                        payment: payment_intent,
                        reference: dispute,
                        credits,
                        fee,
                        reason: Reversal::Dispute,
                    }),
                )]
            }
            Notice::DisputeClosed {
                dispute,
                payment_intent,
                amount,
                won: true,
            } => {
                let Some(deposit) = self.deposit(payments, &payment_intent).await? else {
                    return Ok(Vec::new());
                };
                let (credits, fee) = deposit.split_step(Cents(0), amount);
                vec![envelope(
                    events::billing_event_id("dispute_won", &dispute),
                    Event::DepositReinstated(DepositReinstated {
                        account: deposit.account,
                        payment: payment_intent,
                        reference: dispute,
                        credits,
                        fee,
                    }),
                )]
            }
            // A recharge's decline is recorded by the ledger, which charged it.
            Notice::RechargeFailed { .. } | Notice::DisputeClosed { .. } | Notice::Ignored => {
                Vec::new()
            }
        })
    }

    /// The settled deposit of `payment`, as the ledger folded it; `None`
    /// for a payment the router did not make (another product's, on the
    /// same Stripe account), whose refunds and disputes are not ours.
    async fn deposit(
        &self,
        payments: &Payments,
        payment: &str,
    ) -> Result<Option<SettledDeposit>, WebhookError> {
        let row = sqlx::query("SELECT account, credits, fee FROM deposits WHERE payment = $1")
            .bind(payment)
            .fetch_optional(&self.store.pool)
            .await
            .map_err(|e| WebhookError::Retry(e.to_string()))?;
        let Some(row) = row else {
            let ours = payments
                .stripe
                .intent_account(payment)
                .await
                .map_err(|e| WebhookError::Retry(e.to_string()))?;
            return match ours {
                None => {
                    tracing::info!(
                        payment,
                        "refund or dispute of a payment the router did not make: ignored"
                    );
                    Ok(None)
                }
                Some(_) => Err(WebhookError::Retry(format!(
                    "no settled deposit for {payment} yet; Stripe will send this again"
                ))),
            };
        };
        let get = |r: Result<i64, sqlx::Error>| r.map_err(|e| WebhookError::Retry(e.to_string()));
        let account: String = row
            .try_get("account")
            .map_err(|e| WebhookError::Retry(e.to_string()))?;
        let cents = |nanos: i64| Money::from_nanos(nanos).cents().unwrap_or_default();
        Ok(Some(SettledDeposit {
            account: parse_account(&account)?,
            credits: cents(get(row.try_get("credits"))?),
            fee: cents(get(row.try_get("fee"))?),
        }))
    }
}

/// A deposit, as a reversal splits it.
struct SettledDeposit {
    account: AccountId,
    credits: Cents,
    fee: Cents,
}

impl SettledDeposit {
    /// The credits and fee parts of the money going back from `before` to
    /// `after` (running totals of what was paid back), proportional to the
    /// deposit's own split, so the parts of several steps add up to the
    /// parts of their sum.
    fn split_step(&self, before: Cents, after: Cents) -> (Money, Money) {
        let total = Cents(self.credits.0 + self.fee.0);
        let share = |paid| payments::deposit::credits_share(paid, self.credits, total);
        let credits = share(after).0 - share(before).0;
        let fee = (after.0 - before.0) - credits;
        (Cents(credits).money(), Cents(fee).money())
    }
}

fn parse_account(text: &str) -> Result<AccountId, WebhookError> {
    text.parse().map_err(|_| {
        WebhookError::Unreadable(payments::webhook::WebhookError::NotAnEvent(format!(
            "`{}` is not an account id",
            crate::echo(text)
        )))
    })
}

fn payment_error(e: payments::stripe::PaymentsError) -> CpError {
    tracing::error!(error = %e, "Stripe call failed");
    CpError::Unavailable(
        "The payment provider could not be reached; nothing was charged. Try again shortly.".into(),
    )
}

/// One line of an account's billing history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    /// When (a day for daily usage totals), UTC.
    pub at: String,
    /// deposit, auto-recharge, refund, dispute, dispute won, grant, usage.
    pub kind: String,
    pub detail: String,
    /// What it did to the balance.
    pub credits: Money,
    /// The deposit fee paid (or given back) with it.
    pub fee: Money,
    /// The balance after it.
    pub balance: Money,
}

impl ControlPlane {
    /// The account's billing history, oldest first: every deposit, fee,
    /// auto-recharge, refund, dispute and grant, and usage as one row per
    /// UTC day, each with the balance after it (usage counted at the end of
    /// its day).
    pub async fn history_of(&self, account: AccountId) -> Result<Vec<HistoryRow>, CpError> {
        let key = account.to_string();
        // Every line but usage's is a row of `journal_posted`; usage (whose
        // lines the `journal` view reads from request rows) comes from the
        // day totals below.
        let lines = sqlx::query(
            "SELECT j.event_id, j.at, j.book, j.debit, j.credit, j.memo, a.kind FROM applied_events a
             JOIN journal_posted j ON j.event_id = a.event_id
             WHERE a.account = $1 AND j.account = $1 AND a.kind <> 'usage_recorded'
               AND j.book IN ('customer_credits', 'fee_revenue')
             ORDER BY j.at, j.event_id, j.line",
        )
        .bind(&key)
        .fetch_all(&self.store.pool)
        .await?;
        let mut rows: Vec<(String, HistoryRow)> = Vec::new();
        for line in &lines {
            let event: String = line.try_get("event_id")?;
            let at: String = line.try_get("at")?;
            let book: String = line.try_get("book")?;
            let delta = Money::from_nanos(line.try_get("credit")?)
                - Money::from_nanos(line.try_get("debit")?);
            if rows.last().is_none_or(|(id, _)| *id != event) {
                let kind: String = line.try_get("kind")?;
                let memo: String = line.try_get("memo")?;
                rows.push((
                    event.clone(),
                    HistoryRow {
                        at: crate::queries::short_time(&at),
                        kind: label(&kind, &memo).to_owned(),
                        detail: memo,
                        credits: Money::ZERO,
                        fee: Money::ZERO,
                        balance: Money::ZERO,
                    },
                ));
            }
            if let Some((_, row)) = rows.last_mut() {
                if book == "customer_credits" {
                    row.credits += delta;
                } else {
                    row.fee += delta;
                }
            }
        }
        let days = sqlx::query(
            "SELECT day, spent, requests FROM day_spend WHERE account = $1 ORDER BY day",
        )
        .bind(&key)
        .fetch_all(&self.store.pool)
        .await?;
        let mut merged: Vec<HistoryRow> = rows.into_iter().map(|(_, r)| r).collect();
        for day in &days {
            let date: String = day.try_get("day")?;
            let requests: i64 = day.try_get("requests")?;
            merged.push(HistoryRow {
                at: format!("{date} (day)"),
                kind: "usage".into(),
                detail: match requests {
                    1 => "1 request".to_owned(),
                    n => format!("{n} requests"),
                },
                credits: Money::ZERO - Money::from_nanos(day.try_get("spent")?),
                fee: Money::ZERO,
                balance: Money::ZERO,
            });
        }
        // A day's usage total comes after that day's events.
        merged.sort_by(|a, b| {
            let key = |r: &HistoryRow| (r.at.get(..10).map(str::to_owned), r.kind == "usage");
            key(a).cmp(&key(b)).then_with(|| a.at.cmp(&b.at))
        });
        let mut balance = Money::ZERO;
        for row in &mut merged {
            balance += row.credits;
            row.balance = balance;
        }
        Ok(merged)
    }
}

/// What a journal entry is, for people.
fn label(kind: &str, memo: &str) -> &'static str {
    match kind {
        "deposit_settled" if memo.starts_with("auto-recharge") => "auto-recharge",
        "deposit_settled" => "deposit",
        "deposit_reversed" if memo.starts_with("dispute") => "dispute",
        "deposit_reversed" => "refund",
        "deposit_reinstated" => "dispute won",
        "credits_granted" => "grant",
        _ => "other",
    }
}
