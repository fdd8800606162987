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
/// spendable and `fee` is revenue. Its envelope id derives from `payment`
/// ([`deposit_event_id`]), so every report of one payment (the Checkout
/// Session, its PaymentIntent, the auto-recharge that made it) settles it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositSettled {
    pub account: AccountId,
    pub credits: Money,
    pub fee: Money,
    /// The payment's reference (a Stripe PaymentIntent id).
    pub payment: String,
    /// The auto-recharge this payment is (absent for a deposit made at Checkout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recharge: Option<Uuid>,
}

/// Why a deposit was taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reversal {
    /// Refunded to the card.
    Refund,
    /// Disputed by the card holder: the bank withdrew the funds.
    Dispute,
}

/// `deposit_reversed`: part or all of a paid deposit went back (a refund,
/// or the funds a dispute withdrew): `credits` leave the balance (which may
/// go negative: then only free models serve) and `fee` leaves fee revenue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositReversed {
    pub account: AccountId,
    /// The deposit's PaymentIntent.
    pub payment: String,
    /// What reversed it: a refund step (`ch_…:refunded:<total>`) or a dispute (`dp_…`).
    pub reference: String,
    pub credits: Money,
    pub fee: Money,
    pub reason: Reversal,
}

/// `deposit_reinstated`: a dispute was won and its funds came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositReinstated {
    pub account: AccountId,
    pub payment: String,
    /// The dispute.
    pub reference: String,
    pub credits: Money,
    pub fee: Money,
}

/// `payment_customer_set`: the account's customer at the payment provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCustomerSet {
    pub account: AccountId,
    /// A Stripe customer id.
    pub customer: String,
}

/// `card_saved`: a card the account's owner saved for auto-recharge (the
/// latest replaces the one before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSaved {
    pub account: AccountId,
    pub customer: String,
    /// A Stripe PaymentMethod id.
    pub payment_method: String,
    pub brand: String,
    pub last4: String,
}

/// `card_removed`: the saved card is gone; auto-recharge turns off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRemoved {
    pub account: AccountId,
    pub payment_method: String,
}

/// `auto_recharge_set`: when the balance falls under `threshold`, charge the
/// saved card for `amount` of credits (plus the fee); off when not `enabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoRechargeSet {
    pub account: AccountId,
    pub enabled: bool,
    pub threshold: Money,
    pub amount: Money,
}

/// `recharge_declined`: an auto-recharge's charge was refused. After three
/// in a row auto-recharge turns itself off; until then the next one may
/// start from `retry_at` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeDeclined {
    pub account: AccountId,
    pub recharge: Uuid,
    #[serde(default)]
    pub payment_intent: Option<String>,
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub retry_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The envelope id of the `deposit_settled` of `payment`: every report of
/// one payment settles it once.
pub fn deposit_event_id(payment: &str) -> Uuid {
    Uuid::new_v5(&BILLING_NAMESPACE, format!("deposit:{payment}").as_bytes())
}

/// The id of the auto-recharge the event `trigger` (a usage event that took
/// the balance under the threshold) starts; also its idempotency key.
pub fn recharge_id(trigger: Uuid) -> Uuid {
    Uuid::new_v5(&BILLING_NAMESPACE, format!("recharge:{trigger}").as_bytes())
}

/// The envelope id of an event derived from a payment provider's fact
/// (`kind`, `reference`), so reports of it repeated or reordered add nothing.
pub fn billing_event_id(kind: &str, reference: &str) -> Uuid {
    Uuid::new_v5(&BILLING_NAMESPACE, format!("{kind}:{reference}").as_bytes())
}

const BILLING_NAMESPACE: Uuid = Uuid::from_u128(0x6d72_6269_6c6c_696e_6700_0000_0000_0001);

/// `daily_limit_set`: the most the account may spend per UTC day; `None` lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyLimitSet {
    pub account: AccountId,
    #[serde(default)]
    pub limit: Option<Money>,
}
