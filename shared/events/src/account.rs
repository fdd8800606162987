//! Account and billing events.

use std::fmt;
use std::str::FromStr;

use money::Money;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account (tenant): the unit that holds credits and pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub Uuid);

impl AccountId {
    /// A fresh random id.
    pub fn new() -> AccountId {
        AccountId(Uuid::new_v4())
    }
}

impl Default for AccountId {
    fn default() -> Self {
        AccountId::new()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AccountId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(AccountId)
    }
}

/// `account_opened`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOpened {
    pub account: AccountId,
    /// Display name.
    pub name: String,
}

/// `credits_granted`: credits with no payment behind them (demo credits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditsGranted {
    pub account: AccountId,
    pub amount: Money,
    /// Why, for the journal.
    pub reason: String,
}

/// `deposit_settled`: the customer paid `credits + fee`; `credits` become
/// spendable and `fee` is revenue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositSettled {
    pub account: AccountId,
    pub credits: Money,
    pub fee: Money,
    /// The payment's reference (a Stripe PaymentIntent id).
    pub payment: String,
}

/// `daily_limit_set`: the most the account may spend per UTC day; `None` lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyLimitSet {
    pub account: AccountId,
    #[serde(default)]
    pub limit: Option<Money>,
}
