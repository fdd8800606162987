//! What the ledger publishes for the gateways: one account's state, in the
//! `accounts` bucket under the account id.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
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
    /// Per gateway, the highest of its origin sequences already included.
    #[serde(default)]
    pub applied: BTreeMap<String, u64>,
    /// Per gateway process (origin instance, recently active), how many of
    /// its events are included. A process writes its events in order and
    /// the ledger applies them in that order, so a gateway adds exactly its
    /// events after the first this many on top of the state.
    #[serde(default)]
    pub applied_events: BTreeMap<String, u64>,
    /// Per API key that ever spent, its spend on `day`, in `day`'s month
    /// and ever: what key budgets are checked against.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, KeySpend>,
}

/// One key's spend, as [`AccountState::keys`] carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpend {
    pub today: Money,
    pub month: Money,
    pub lifetime: Money,
}

/// The bucket gateways publish their status to, under their id.
pub const GATEWAYS_BUCKET: &str = "gateways";

/// A gateway's usage journal, as it last reported it (every few seconds
/// while it can reach the log): what operators and `reconcile` need to see
/// usage that has not reached the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub gateway: String,
    /// The reporting process.
    pub instance: String,
    pub started_at: DateTime<Utc>,
    /// When this report was made.
    pub seen_at: DateTime<Utc>,
    /// The next origin sequence number it will give.
    pub next_seq: u64,
    /// Usage events in its journal that the log has not taken yet.
    pub journal_events: u64,
    pub journal_bytes: u64,
    /// Events the log refused even slimmed, kept in the journal's `rejected.jsonl`.
    pub set_aside: u64,
    /// Events neither the journal nor memory could keep.
    pub lost: u64,
    /// Where its journal is.
    pub data_dir: String,
}

/// A circuit breaker's state, as the gateway reports it to operators and
/// to the control plane's models page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Traffic flows.
    Closed,
    /// A few probes may pass to test recovery.
    HalfOpen,
    /// Traffic is turned away.
    Open,
}

impl CircuitState {
    /// `closed`, `half_open` or `open`: the name in JSON, metrics and pages.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

impl std::fmt::Display for CircuitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
