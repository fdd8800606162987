//! A scratch projection in memory, built by replaying the log with the same
//! postings as the live ledger: what the store's tables must equal.

use std::collections::{BTreeMap, BTreeSet};

use events::Envelope;
use money::Money;

use crate::postings::{effects, Effects};
use crate::recharge::Recharge;

/// One account's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub balance: Money,
    pub daily_limit: Option<Money>,
    pub version: u64,
}

/// One journal line as stored: (book, account, debit, credit).
pub type JournalLine = (String, String, Money, Money);

/// Everything the ledger's tables hold, keyed as the tables are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub applied: BTreeSet<String>,
    pub accounts: BTreeMap<String, Account>,
    /// (account, day) → (spent, requests).
    pub days: BTreeMap<(String, String), (Money, u64)>,
    /// (event id, line) → line.
    pub journal: BTreeMap<(String, i32), JournalLine>,
    /// (account, gateway process) → its usage events.
    pub instances: BTreeMap<(String, String), u64>,
    /// Gateway → (highest number of its sequence, events).
    pub sequences: BTreeMap<String, (u64, u64)>,
    /// Account → auto-recharge (accounts that ever set one up).
    pub recharges: BTreeMap<String, Recharge>,
    /// Payment → (account, credits, fee, recharge).
    pub deposits: BTreeMap<String, (String, Money, Money, Option<String>)>,
    /// Payment → the money (credits and fee) paid back on it: refunds and
    /// disputes, less disputes won. Only the replay keeps it (for matching
    /// against Stripe); the store has it in the journal.
    pub returned: BTreeMap<String, Money>,
}

impl Projection {
    /// Applies `envelope` unless its id was applied before (or the ledger
    /// applies no such event); its effects when it was applied now.
    pub fn apply(&mut self, envelope: &Envelope) -> Option<Effects> {
        let e = effects(envelope)?;
        let id = envelope.id.to_string();
        if !self.applied.insert(id.clone()) {
            return None;
        }
        let key = e.account.to_string();
        for (n, line) in e.lines.iter().enumerate() {
            self.journal.insert(
                (id.clone(), n as i32),
                (
                    line.book.as_str().to_owned(),
                    line.account.to_string(),
                    line.debit,
                    line.credit,
                ),
            );
        }
        let account = self.accounts.entry(key.clone()).or_default();
        account.balance += e.balance_delta();
        account.version += 1;
        if let Some(name) = &e.name {
            account.name = name.clone();
        }
        if let Some(limit) = e.limit {
            account.daily_limit = limit;
        }
        if let Some(instance) = &e.instance {
            *self
                .instances
                .entry((key.clone(), instance.clone()))
                .or_default() += 1;
        }
        if let Some((gateway, seq)) = &e.origin {
            let sequence = self.sequences.entry(gateway.clone()).or_default();
            sequence.0 = sequence.0.max(*seq);
            sequence.1 += 1;
        }
        if let events::Event::DepositSettled(d) = &envelope.event {
            self.deposits.entry(d.payment.clone()).or_insert((
                key.clone(),
                d.credits,
                d.fee,
                d.recharge.map(|r| r.to_string()),
            ));
        }
        match &envelope.event {
            events::Event::DepositReversed(r) => {
                *self.returned.entry(r.payment.clone()).or_default() += r.credits + r.fee;
            }
            events::Event::DepositReinstated(r) => {
                let returned = self.returned.entry(r.payment.clone()).or_default();
                *returned = *returned - (r.credits + r.fee);
            }
            _ => {}
        }
        let balance = self.accounts[&key].balance;
        let recharge = self.recharges.entry(key.clone()).or_default();
        recharge.apply(envelope, balance);
        if recharge.is_default() {
            self.recharges.remove(&key);
        }
        if let Some(spent) = e.spend {
            let day = self.days.entry((key, e.day.to_string())).or_default();
            day.0 += spent;
            day.1 += 1;
        }
        Some(e)
    }
}
