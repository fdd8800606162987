//! The books' card payments beside Stripe's (`modelrouter reconcile
//! --stripe`): every settled deposit and auto-recharge must be a succeeded
//! PaymentIntent of the same amount for the same account, every Stripe
//! payment made for an account must be in the books, and what each payment
//! has paid back (refunds, and disputes not won) must agree both ways.
//!
//! The books here are the replay of the event log, which plain `reconcile`
//! proves equal to the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use money::{Cents, Money};
use payments::stripe::{PaidIntent, Reversal, Stripe};

use crate::memory::Projection;
use crate::LedgerError;

/// What Stripe holds, as listed through its API.
#[derive(Debug, Clone, Default)]
pub struct StripeRecords {
    /// Succeeded PaymentIntents.
    pub intents: Vec<PaidIntent>,
    /// Every refund, whatever its status.
    pub refunds: Vec<Reversal>,
    /// Every dispute, whatever its status.
    pub disputes: Vec<Reversal>,
}

impl StripeRecords {
    /// Lists everything from `stripe` (every page).
    pub async fn fetch(stripe: &Stripe) -> Result<StripeRecords, LedgerError> {
        let failed = |e: payments::stripe::PaymentsError| LedgerError::Data(format!("stripe: {e}"));
        Ok(StripeRecords {
            intents: stripe.paid_intents().await.map_err(failed)?,
            refunds: stripe.refunds().await.map_err(failed)?,
            disputes: stripe.disputes().await.map_err(failed)?,
        })
    }

    /// Per PaymentIntent, the money Stripe has paid back on it.
    fn returned(&self) -> BTreeMap<String, Cents> {
        let mut returned: BTreeMap<String, Cents> = BTreeMap::new();
        let refunds = self
            .refunds
            .iter()
            .filter(|r| r.status == "succeeded" || r.status == "pending");
        // A dispute takes the money until it is won.
        let disputes = self.disputes.iter().filter(|d| d.status != "won");
        for reversal in refunds.chain(disputes) {
            if let Some(intent) = &reversal.payment_intent {
                returned.entry(intent.clone()).or_default().0 += reversal.amount.0;
            }
        }
        returned
    }
}

/// The outcome: how many payments agree, and each disagreement.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Payments found on both sides with the same amounts.
    pub matched: usize,
    /// Succeeded payments at Stripe made for no account of ours (other
    /// products on the same Stripe account); listed, not errors.
    pub foreign: usize,
    /// Each disagreement, in words finance can act on.
    pub unmatched: Vec<String>,
}

impl Settlement {
    /// Whether every payment agrees.
    pub fn is_clean(&self) -> bool {
        self.unmatched.is_empty()
    }
}

impl fmt::Display for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.unmatched {
            writeln!(f, "stripe: {line}")?;
        }
        writeln!(
            f,
            "stripe: {} payments match the books, {} differ; {} payments at Stripe are not for an account",
            self.matched,
            self.unmatched.len(),
            self.foreign
        )
    }
}

fn dollars(money: Money) -> String {
    money.usd()
}

/// Matches the books' deposits and paybacks with Stripe's records.
pub fn compare(books: &Projection, stripe: &StripeRecords) -> Settlement {
    let mut settlement = Settlement::default();
    let intents: BTreeMap<&str, &PaidIntent> =
        stripe.intents.iter().map(|i| (i.id.as_str(), i)).collect();
    for (payment, (account, credits, fee, recharge)) in &books.deposits {
        let what = if recharge.is_some() {
            "auto-recharge"
        } else {
            "deposit"
        };
        let paid = *credits + *fee;
        match intents.get(payment.as_str()) {
            None => settlement.unmatched.push(format!(
                "{what} {payment} of ${} for account {account} is in the books but Stripe has no succeeded payment {payment}",
                dollars(paid)
            )),
            Some(intent) if intent.amount.money() != paid => settlement.unmatched.push(format!(
                "{what} {payment} for account {account}: the books have ${}, Stripe charged ${}",
                dollars(paid),
                dollars(intent.amount.money())
            )),
            Some(intent) if intent.metadata.get("account") != Some(account) => {
                settlement.unmatched.push(format!(
                    "{what} {payment}: the books credit account {account}, Stripe's payment is for {}",
                    intent.metadata.get("account").map_or("no account", String::as_str)
                ))
            }
            Some(_) => settlement.matched += 1,
        }
    }
    for intent in &stripe.intents {
        if books.deposits.contains_key(&intent.id) {
            continue;
        }
        match intent.metadata.get("account") {
            Some(account) => settlement.unmatched.push(format!(
                "Stripe payment {} of ${} for account {account} ({}) is not in the books",
                intent.id,
                dollars(intent.amount.money()),
                intent
                    .metadata
                    .get("kind")
                    .map_or("payment", String::as_str)
            )),
            None => settlement.foreign += 1,
        }
    }
    let at_stripe = stripe.returned();
    let payments: BTreeSet<&String> = at_stripe.keys().chain(books.returned.keys()).collect();
    for payment in payments {
        let ours = books.returned.get(payment).copied().unwrap_or_default();
        let theirs = at_stripe.get(payment).copied().unwrap_or_default().money();
        if ours != theirs {
            settlement.unmatched.push(format!(
                "payment {payment}: the books have ${} paid back (refunds, disputes not won), Stripe ${}",
                dollars(ours),
                dollars(theirs)
            ));
        }
    }
    settlement
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn usd(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn intent(id: &str, cents: i64, account: Option<&str>) -> PaidIntent {
        let mut metadata = HashMap::new();
        if let Some(account) = account {
            metadata.insert("account".to_owned(), account.to_owned());
            metadata.insert("kind".to_owned(), "deposit".to_owned());
        }
        PaidIntent {
            id: id.into(),
            amount: Cents(cents),
            metadata,
        }
    }

    fn reversal(id: &str, intent: &str, cents: i64, status: &str) -> Reversal {
        Reversal {
            id: id.into(),
            payment_intent: Some(intent.into()),
            amount: Cents(cents),
            status: status.into(),
        }
    }

    fn books() -> Projection {
        let mut books = Projection::default();
        books
            .deposits
            .insert("pi_1".into(), ("acct".into(), usd("10"), usd("0.4"), None));
        books.deposits.insert(
            "pi_2".into(),
            ("acct".into(), usd("20"), usd("0.8"), Some("r".into())),
        );
        books.returned.insert("pi_1".into(), usd("5.2"));
        books
    }

    fn stripe() -> StripeRecords {
        StripeRecords {
            intents: vec![
                intent("pi_1", 1040, Some("acct")),
                intent("pi_2", 2080, Some("acct")),
                intent("pi_other", 999, None),
            ],
            refunds: vec![
                reversal("re_1", "pi_1", 520, "succeeded"),
                reversal("re_x", "pi_1", 100, "failed"),
            ],
            disputes: vec![reversal("dp_1", "pi_2", 2080, "won")],
        }
    }

    #[test]
    fn agreeing_books_and_stripe_match() {
        let settlement = compare(&books(), &stripe());
        assert!(settlement.is_clean(), "{settlement}");
        assert_eq!(settlement.matched, 2);
        assert_eq!(settlement.foreign, 1);
    }

    #[test]
    fn every_disagreement_is_listed_both_ways() {
        let mut books = books();
        books.deposits.insert(
            "pi_ghost".into(),
            ("acct".into(), usd("5"), usd("0.2"), None),
        );
        let mut stripe = stripe();
        stripe.intents[1].amount = Cents(2000);
        stripe.intents.push(intent("pi_missing", 520, Some("acct")));
        stripe
            .refunds
            .push(reversal("re_2", "pi_1", 1, "succeeded"));
        stripe.disputes[0].status = "lost".into();
        let settlement = compare(&books, &stripe);
        let text = settlement.to_string();
        assert_eq!(settlement.unmatched.len(), 5, "{text}");
        for expected in [
            "pi_ghost",
            "Stripe charged $20.00",
            "pi_missing",
            "payment pi_1",
            "payment pi_2",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
