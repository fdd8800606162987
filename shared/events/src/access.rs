//! Access events: who belongs to an account, which API keys it holds and
//! which providers it has blocked. The control plane writes them; gateways
//! follow their projections (the `keys` and `policies` buckets).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AccountId;

/// A person who can log in to the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a member may do in an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including billing and members.
    Owner,
    /// Keys, providers, limits and usage; not billing, not members.
    Member,
}

impl Role {
    /// The name used on the wire and in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "member" => Ok(Role::Member),
            other => Err(format!("unknown role `{other}`: use owner or member")),
        }
    }
}

/// `member_invited`: an owner invited `email`; the invitation's token is
/// known only to the link's recipient (the event holds its digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInvited {
    pub account: AccountId,
    pub invitation: Uuid,
    pub email: String,
    pub role: Role,
    pub by: UserId,
    /// SHA-256 of the link's 256-bit random token, hex.
    pub token_digest: String,
    /// After this the link no longer works (absent: it never expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `invitation_withdrawn`: an owner withdrew an open invitation; its link
/// stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationWithdrawn {
    pub account: AccountId,
    pub invitation: Uuid,
    pub by: UserId,
}

/// `member_removed`: an owner removed a member. Their sessions in the
/// account end at once (roles are read on every request) and the API keys
/// they created are revoked by their own `key_revoked` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoved {
    pub account: AccountId,
    pub user: UserId,
    pub by: UserId,
}

/// `member_joined`: a user became a member (the account's creator, or an
/// invitee accepting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberJoined {
    pub account: AccountId,
    pub user: UserId,
    pub email: String,
    pub role: Role,
    /// The invitation accepted; `None` for the account's creator.
    #[serde(default)]
    pub invitation: Option<Uuid>,
}

/// `member_role_set`: an owner changed a member's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRoleSet {
    pub account: AccountId,
    pub user: UserId,
    pub role: Role,
    pub by: UserId,
}

/// `key_issued`: an API key was created. Only its keyed digest travels; the
/// plaintext was shown once to its creator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIssued {
    pub account: AccountId,
    /// The key's id: the first 12 hex characters of `digest`.
    pub key: String,
    /// HMAC-SHA256 of the key under the deployment's key-hash secret, hex.
    pub digest: String,
    pub name: String,
    /// The key's first characters and last four, to recognise it by.
    pub prefix: String,
    pub last_four: String,
    /// Who created it (`None` for the key `modelrouter up` creates).
    #[serde(default)]
    pub by: Option<UserId>,
    /// An admin key calls the JSON admin API, not the gateway.
    #[serde(default)]
    pub admin: bool,
}

/// `key_revoked`: the key stops working on every gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRevoked {
    pub account: AccountId,
    pub key: String,
    /// Its digest, so a follower needs no lookup to forget it.
    pub digest: String,
    #[serde(default)]
    pub by: Option<UserId>,
}

/// What one API key may do beyond its account's limits; every field is
/// optional, and the default restricts nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// After this the key is refused (401 `key_expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Requests per minute (429 `key_rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens (input and output) per minute (429 `key_tokens_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// The most the key may spend per period (429 or, for a lifetime
    /// budget, 402 `key_budget_exceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<KeyBudget>,
    /// Tiers (`economy`, `standard`, `premium`, `auto`) and catalog model
    /// ids the key may ask for; empty allows all (403 `model_not_allowed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

/// A key's spend budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBudget {
    pub amount: money::Money,
    pub period: BudgetPeriod,
}

/// What a key budget counts: spend on the UTC day, in the UTC month, or ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Daily,
    Monthly,
    Lifetime,
}

impl BudgetPeriod {
    /// Every period, as the API names them.
    pub const ALL: [BudgetPeriod; 3] = [
        BudgetPeriod::Daily,
        BudgetPeriod::Monthly,
        BudgetPeriod::Lifetime,
    ];

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Monthly => "monthly",
            BudgetPeriod::Lifetime => "lifetime",
        }
    }

    /// The period named `name`.
    pub fn parse(name: &str) -> Option<BudgetPeriod> {
        BudgetPeriod::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl KeyLimits {
    /// Whether nothing is restricted.
    pub fn is_open(&self) -> bool {
        *self == KeyLimits::default()
    }
}

/// `key_limits_set`: a key's [`KeyLimits`] replaced as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimitsSet {
    pub account: AccountId,
    /// The key's id.
    pub key: String,
    pub limits: KeyLimits,
    #[serde(default)]
    pub by: Option<UserId>,
}

/// `provider_blocked` / `provider_unblocked`: the account's requests skip
/// (or again use) every model of `provider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderBlock {
    pub account: AccountId,
    /// A provider id of the catalog (`openai`, `groq`, …).
    pub provider: String,
    #[serde(default)]
    pub by: Option<UserId>,
}

/// The bucket of API keys the gateways accept, under their digest.
pub const KEYS_BUCKET: &str = "keys";

/// A key as gateways see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub account: AccountId,
    pub key: String,
    /// A revoked key is refused.
    pub revoked: bool,
    /// Its own limits (absent in views written before they existed).
    #[serde(default, skip_serializing_if = "KeyLimits::is_open")]
    pub limits: KeyLimits,
}

/// The bucket of per-account routing policies, under the account id.
pub const POLICIES_BUCKET: &str = "policies";

/// An account's routing policy as gateways see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// Provider ids the account's requests never go to.
    pub blocked: Vec<String>,
    /// A trace destination of the account captures prompt and completion
    /// text: gateways publish it (`content_recorded`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture_content: bool,
}

/// What an account is alerted about and where alerts go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRules {
    /// Percentages of the daily limit whose crossing alerts (e.g. 50, 80, 100).
    #[serde(default)]
    pub daily_limit_percents: Vec<u8>,
    /// Percentages of each key's budget whose crossing alerts.
    #[serde(default)]
    pub key_budget_percents: Vec<u8>,
    /// Alert when the balance falls below this (once per UTC day while below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_below: Option<money::Money>,
    /// Alert when an auto-recharge's charge is declined.
    #[serde(default)]
    pub recharge_failed: bool,
    /// Where alerts are POSTed, signed (see `webhook_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key of the webhook's signature, made by the control
    /// plane when a webhook is first set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub webhook_secret: String,
    /// Addresses alerts are mailed to (when an SMTP server is configured).
    #[serde(default)]
    pub emails: Vec<String>,
}

/// `alert_rules_set`: an account's [`AlertRules`] replaced as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRulesSet {
    pub account: AccountId,
    pub rules: AlertRules,
    #[serde(default)]
    pub by: Option<UserId>,
}
