//! Auto-recharge, decided by the ledger from the event stream alone: the
//! live ledger and reconciliation apply the same events in the same order
//! and so start the same recharges, and a restarted ledger knows which one
//! is in flight.
//!
//! A recharge starts when a usage event takes the account's balance under
//! its threshold while auto-recharge is on, a card is saved, no recharge is
//! in flight, and any wait after a decline has passed. Its id derives from
//! that event ([`events::recharge_id`]) and is the idempotency key of the
//! charge, so a charge sent again after a crash is the same charge. It stays
//! in flight until its `deposit_settled` or `recharge_declined` is folded;
//! three declines in a row turn auto-recharge off. The charge itself is made
//! by the ledger's driver ([`crate::payments`]) after the fold commits.

use chrono::{DateTime, Utc};
use events::{Envelope, Event};
use money::Money;
use uuid::Uuid;

/// Declines in a row after which auto-recharge turns itself off.
pub const MAX_DECLINES: u32 = 3;

/// One account's auto-recharge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recharge {
    pub enabled: bool,
    pub threshold: Money,
    /// Credits bought per recharge (the card pays them plus the fee).
    pub amount: Money,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub in_flight: Option<Uuid>,
    /// The credits the recharge in flight buys, fixed when it starts: a
    /// charge sent again after a crash must be the same request, whatever
    /// the settings say meanwhile.
    pub charging: Money,
    pub declines: u32,
    pub retry_at: Option<DateTime<Utc>>,
    /// The last decline's code and message, for the billing page.
    pub last_decline: Option<String>,
}

impl Recharge {
    /// Folds `envelope` (an event of this account) after which the balance
    /// is `balance`; the recharge it starts, if it starts one.
    pub fn apply(&mut self, envelope: &Envelope, balance: Money) -> Option<Uuid> {
        match &envelope.event {
            Event::PaymentCustomerSet(c) => self.customer = Some(c.customer.clone()),
            Event::CardSaved(c) => {
                self.customer = Some(c.customer.clone());
                self.payment_method = Some(c.payment_method.clone());
                self.brand = Some(c.brand.clone());
                self.last4 = Some(c.last4.clone());
                self.rearm();
                self.abandon();
            }
            Event::CardRemoved(c) if self.payment_method.as_deref() == Some(&c.payment_method) => {
                self.payment_method = None;
                self.brand = None;
                self.last4 = None;
                self.enabled = false;
                self.abandon();
            }
            Event::AutoRechargeSet(s) => {
                // Only with a card to charge (the request may have raced
                // the card's removal).
                self.enabled = s.enabled && self.payment_method.is_some();
                self.threshold = s.threshold;
                self.amount = s.amount;
                self.rearm();
            }
            Event::RechargeDeclined(d) if self.in_flight == Some(d.recharge) => {
                self.in_flight = None;
                self.charging = Money::ZERO;
                self.declines += 1;
                self.retry_at = d.retry_at;
                self.last_decline = Some(format!("{}: {}", d.code, d.message));
                if self.declines >= MAX_DECLINES {
                    self.enabled = false;
                }
            }
            Event::DepositSettled(d) if d.recharge.is_some() && d.recharge == self.in_flight => {
                self.in_flight = None;
                self.charging = Money::ZERO;
                self.declines = 0;
                self.retry_at = None;
            }
            Event::UsageRecorded(u) if u.cost > Money::ZERO => {
                return self.start(envelope, balance)
            }
            _ => {}
        }
        None
    }

    /// The card changed: a recharge in flight is not charged (again) on
    /// another card or none. One that reached Stripe already still settles
    /// through its own `deposit_settled`; one that did not is dropped, and
    /// the next usage under the threshold starts a fresh one.
    fn abandon(&mut self) {
        self.in_flight = None;
        self.charging = Money::ZERO;
    }

    /// Settings changed: declines are forgiven and the next start may come at once.
    fn rearm(&mut self) {
        self.declines = 0;
        self.retry_at = None;
    }

    fn start(&mut self, envelope: &Envelope, balance: Money) -> Option<Uuid> {
        let ready = self.enabled
            && self.customer.is_some()
            && self.payment_method.is_some()
            && self.in_flight.is_none()
            && balance < self.threshold
            && self.retry_at.is_none_or(|at| envelope.at >= at);
        if !ready {
            return None;
        }
        let recharge = events::recharge_id(envelope.id);
        self.in_flight = Some(recharge);
        self.charging = self.amount;
        Some(recharge)
    }

    /// Whether `event` may change an account's auto-recharge whatever its
    /// balance: its settings, its card, or the end of a recharge. Other
    /// events (usage) matter only while auto-recharge is on.
    pub fn settles_or_sets(event: &Event) -> bool {
        matches!(
            event,
            Event::PaymentCustomerSet(_)
                | Event::CardSaved(_)
                | Event::CardRemoved(_)
                | Event::AutoRechargeSet(_)
                | Event::RechargeDeclined(_)
                | Event::DepositSettled(_)
        )
    }

    /// Whether anything would ever make this account's state differ from
    /// the default (no row is kept for accounts that never set any).
    pub fn is_default(&self) -> bool {
        *self == Recharge::default()
    }
}

/// The columns [`from_row`] reads.
const COLUMNS: &str =
    "account, enabled, threshold, amount, customer, payment_method, brand, last4, \
                       in_flight, charging, declines, retry_at, last_decline";

/// The account's auto-recharge row (the default when it has none).
pub async fn load(pool: &sqlx::AnyPool, account: &str) -> Result<Recharge, crate::LedgerError> {
    let mut conn = pool.acquire().await?;
    let mut all = load_all(&mut conn, &[account.to_owned()]).await?;
    Ok(all.remove(account).unwrap_or_default())
}

/// The auto-recharge rows of `accounts`, in one query; accounts without
/// one are absent (their state is the default).
pub async fn load_all(
    conn: &mut sqlx::AnyConnection,
    accounts: &[String],
) -> Result<std::collections::HashMap<String, Recharge>, crate::LedgerError> {
    use sqlx::Row;
    let head = format!("SELECT {COLUMNS} FROM auto_recharge WHERE account");
    let rows = store::rows::fetch_in(conn, &head, &[], accounts, "").await?;
    let mut all = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        all.insert(row.try_get("account")?, from_row(&row)?);
    }
    Ok(all)
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Recharge, crate::LedgerError> {
    use sqlx::Row;
    let enabled: i64 = row.try_get("enabled")?;
    let declines: i64 = row.try_get("declines")?;
    let in_flight: Option<String> = row.try_get("in_flight")?;
    let retry_at: Option<String> = row.try_get("retry_at")?;
    Ok(Recharge {
        enabled: enabled != 0,
        threshold: Money::from_nanos(row.try_get("threshold")?),
        amount: Money::from_nanos(row.try_get("amount")?),
        customer: row.try_get("customer")?,
        payment_method: row.try_get("payment_method")?,
        brand: row.try_get("brand")?,
        last4: row.try_get("last4")?,
        in_flight: in_flight.and_then(|id| id.parse().ok()),
        charging: Money::from_nanos(row.try_get("charging")?),
        declines: u32::try_from(declines).unwrap_or(0),
        retry_at: retry_at.and_then(|t| {
            DateTime::parse_from_rfc3339(&t)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }),
        last_decline: row.try_get("last_decline")?,
    })
}

/// Writes the account's auto-recharge row.
pub async fn store<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Any>,
    account: &str,
    r: &Recharge,
) -> Result<(), crate::LedgerError> {
    sqlx::query(
        "INSERT INTO auto_recharge (account, enabled, threshold, amount, customer, payment_method, brand,
                                    last4, in_flight, declines, retry_at, last_decline, charging)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (account) DO UPDATE SET enabled = $2, threshold = $3, amount = $4, customer = $5,
             payment_method = $6, brand = $7, last4 = $8, in_flight = $9, declines = $10,
             retry_at = $11, last_decline = $12, charging = $13",
    )
    .bind(account)
    .bind(i64::from(r.enabled))
    .bind(r.threshold.nanos())
    .bind(r.amount.nanos())
    .bind(&r.customer)
    .bind(&r.payment_method)
    .bind(&r.brand)
    .bind(&r.last4)
    .bind(r.in_flight.map(|id| id.to_string()))
    .bind(i64::from(r.declines))
    .bind(r.retry_at.map(|t| t.to_rfc3339()))
    .bind(&r.last_decline)
    .bind(r.charging.nanos())
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{AccountId, AutoRechargeSet, CardSaved, DepositSettled, RechargeDeclined};

    fn usd(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn envelope(event: Event) -> Envelope {
        Envelope::new(event)
    }

    fn usage(account: AccountId) -> Envelope {
        let mut e = crate::postings::tests_support::usage(account, "0.01");
        e.at = Utc::now();
        e
    }

    fn set_up(account: AccountId) -> Recharge {
        let mut r = Recharge::default();
        r.apply(
            &envelope(Event::CardSaved(CardSaved {
                account,
                customer: "cus_1".into(),
                payment_method: "pm_1".into(),
                brand: "visa".into(),
                last4: "4242".into(),
            })),
            usd("10"),
        );
        r.apply(
            &envelope(Event::AutoRechargeSet(AutoRechargeSet {
                account,
                enabled: true,
                threshold: usd("5"),
                amount: usd("20"),
            })),
            usd("10"),
        );
        r
    }

    #[test]
    fn one_recharge_per_crossing_and_none_while_one_is_in_flight() {
        let account = AccountId::new();
        let mut r = set_up(account);
        assert_eq!(
            r.apply(&usage(account), usd("6")),
            None,
            "above the threshold"
        );
        let trigger = usage(account);
        let started = r.apply(&trigger, usd("4.99"));
        assert_eq!(started, Some(events::recharge_id(trigger.id)));
        assert_eq!(r.apply(&usage(account), usd("4.98")), None, "one in flight");
        // Its deposit settles it; the next crossing starts another.
        r.apply(
            &envelope(Event::DepositSettled(DepositSettled {
                account,
                credits: usd("20"),
                fee: usd("0.8"),
                payment: "pi_1".into(),
                recharge: started,
            })),
            usd("24.98"),
        );
        assert_eq!(r.in_flight, None);
        assert_eq!(r.apply(&usage(account), usd("24")), None);
        assert!(r.apply(&usage(account), usd("4.5")).is_some());
    }

    #[test]
    fn three_declines_in_a_row_turn_it_off_and_a_wait_is_kept() {
        let account = AccountId::new();
        let mut r = set_up(account);
        for strike in 1..=MAX_DECLINES {
            let recharge = r
                .apply(&usage(account), usd("4"))
                .expect("a recharge starts");
            let retry_at = if strike == 1 {
                Some(Utc::now() + chrono::Duration::hours(1))
            } else {
                None
            };
            r.apply(
                &envelope(Event::RechargeDeclined(RechargeDeclined {
                    account,
                    recharge,
                    payment_intent: None,
                    code: "card_declined".into(),
                    message: "Your card was declined.".into(),
                    retry_at,
                })),
                usd("4"),
            );
            assert_eq!(r.declines, strike);
            if strike == 1 {
                assert_eq!(
                    r.apply(&usage(account), usd("3.9")),
                    None,
                    "waits until retry_at"
                );
                r.retry_at = None;
            }
        }
        assert!(!r.enabled, "off after {MAX_DECLINES} declines");
        assert_eq!(r.apply(&usage(account), usd("1")), None);
        // Turning it on again forgives the declines.
        r.apply(
            &envelope(Event::AutoRechargeSet(AutoRechargeSet {
                account,
                enabled: true,
                threshold: usd("5"),
                amount: usd("20"),
            })),
            usd("1"),
        );
        assert_eq!(r.declines, 0);
        assert!(r.apply(&usage(account), usd("0.9")).is_some());
    }

    #[test]
    fn a_recharge_in_flight_keeps_its_amount_when_the_settings_change() {
        let account = AccountId::new();
        let mut r = set_up(account);
        let started = r.apply(&usage(account), usd("4"));
        assert!(started.is_some());
        assert_eq!(r.charging, usd("20"));
        r.apply(
            &envelope(Event::AutoRechargeSet(AutoRechargeSet {
                account,
                enabled: true,
                threshold: usd("5"),
                amount: usd("50"),
            })),
            usd("4"),
        );
        assert_eq!(r.in_flight, started, "still the same recharge");
        assert_eq!(r.charging, usd("20"), "charged as it started");
        r.apply(
            &envelope(Event::DepositSettled(DepositSettled {
                account,
                credits: usd("20"),
                fee: usd("0.8"),
                payment: "pi_1".into(),
                recharge: started,
            })),
            usd("24"),
        );
        assert_eq!(r.charging, Money::ZERO);
        assert!(r.apply(&usage(account), usd("4.5")).is_some());
        assert_eq!(r.charging, usd("50"), "the next one buys the new amount");
    }

    #[test]
    fn a_changed_card_never_leaves_a_recharge_stuck_in_flight() {
        let account = AccountId::new();
        let mut r = set_up(account);
        let started = r.apply(&usage(account), usd("4"));
        assert!(started.is_some());
        r.apply(
            &envelope(Event::CardRemoved(events::CardRemoved {
                account,
                payment_method: "pm_1".into(),
            })),
            usd("4"),
        );
        assert_eq!(r.in_flight, None, "nothing left to charge it to");
        r.apply(
            &envelope(Event::AutoRechargeSet(AutoRechargeSet {
                account,
                enabled: true,
                threshold: usd("5"),
                amount: usd("20"),
            })),
            usd("4"),
        );
        assert!(!r.enabled, "no card, no auto-recharge");
        r.apply(
            &envelope(Event::CardSaved(CardSaved {
                account,
                customer: "cus_1".into(),
                payment_method: "pm_2".into(),
                brand: "visa".into(),
                last4: "4444".into(),
            })),
            usd("4"),
        );
        r.apply(
            &envelope(Event::AutoRechargeSet(AutoRechargeSet {
                account,
                enabled: true,
                threshold: usd("5"),
                amount: usd("20"),
            })),
            usd("4"),
        );
        let again = r.apply(&usage(account), usd("3.9"));
        assert!(
            again.is_some() && again != started,
            "a fresh recharge on the new card"
        );
        // Replacing the card mid-flight drops the old attempt too.
        r.apply(
            &envelope(Event::CardSaved(CardSaved {
                account,
                customer: "cus_1".into(),
                payment_method: "pm_3".into(),
                brand: "visa".into(),
                last4: "1881".into(),
            })),
            usd("3.9"),
        );
        assert_eq!(r.in_flight, None);
        // Its charge, had it reached Stripe, still settles as credits.
        r.apply(
            &envelope(Event::DepositSettled(DepositSettled {
                account,
                credits: usd("20"),
                fee: usd("0.8"),
                payment: "pi_9".into(),
                recharge: again,
            })),
            usd("23.9"),
        );
        assert_eq!(r.in_flight, None);
    }
}
