//! What the ledger publishes for the gateways: one account's state, in the
//! `accounts` bucket under the account id.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use money::Money;
use serde::{Deserialize, Serialize};

use crate::AccountId;

/// The bucket the ledger writes account states to.
pub const ACCOUNTS_BUCKET: &str = "accounts";

/// An account as of the last event the ledger applied to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub account: AccountId,
    /// Spendable credits (may be slightly negative: a request admitted with
    /// credit left is billed in full).
    pub balance: Money,
    /// The UTC day `spent_today` is for.
    pub day: NaiveDate,
    /// Spend on `day`.
    pub spent_today: Money,
    /// The most the account may spend per UTC day.
    #[serde(default)]
    pub daily_limit: Option<Money>,
    /// Bumped by every change.
    pub version: u64,
    /// Per gateway, the highest of its origin sequences already included:
    /// a gateway adds only its own later spend on top of this state.
    #[serde(default)]
    pub applied: BTreeMap<String, u64>,
}
