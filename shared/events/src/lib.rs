//! The domain events: the contract between Model Router's services.
//!
//! Every event travels in an [`Envelope`]: a unique id (the dedupe key on the
//! log and in the ledger), the time it happened, its type and its schema
//! version, then the body:
//!
//! ```json
//! {"id": "…", "at": "2026-11-26T09:00:00Z", "type": "usage_recorded", "v": 1, "data": {…}}
//! ```
//!
//! Rules that keep old logs readable forever:
//! - a body type only ever gains optional fields within a version;
//! - any other change is a new version, and [`Envelope::decode`] keeps
//!   decoding every older one (upgrading it to the current shape);
//! - an unknown type or a version newer than this build is an error, never a
//!   silent skip: a ledger that skipped events would lose money.
//!
//! Golden files in `tests/fixtures` pin the JSON of every version.

mod access;
mod account;
pub mod attribution;
mod content;
mod decode;
mod json;
mod telemetry;
pub mod time;
mod usage;
mod view;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

pub use access::{
    AlertRules, AlertRulesSet, BudgetPeriod, InvitationWithdrawn, KeyBudget, KeyIssued, KeyLimits,
    KeyLimitsSet, KeyRevoked, KeyView, MemberInvited, MemberJoined, MemberRemoved, MemberRoleSet,
    PolicyView, ProviderBlock, Role, UserId, KEYS_BUCKET, POLICIES_BUCKET,
};
pub use account::{
    billing_event_id, deposit_event_id, recharge_id, AccountId, AccountOpened, AutoRechargeSet,
    CardRemoved, CardSaved, CreditsGranted, DailyLimitSet, DepositReinstated, DepositReversed,
    DepositSettled, PaymentCustomerSet, RechargeDeclined, Reversal,
};
pub use content::{ContentMessage, ContentRecorded, MAX_CONTENT_CHARS};
pub use telemetry::{Protocol, Sampling, TelemetryDestinationRemoved, TelemetryDestinationSet};
pub use usage::{
    cap, AttemptRecord, AutoDecision, Origin, Outcome, RequestKind, Timings, Tokens, UsageRecorded,
    AUTO_CONTRIBUTIONS, MAX_ERROR_CHARS, SLIMMEST,
};
pub use view::{
    AccountState, CircuitState, GatewayStatus, KeySpend, ACCOUNTS_BUCKET, GATEWAYS_BUCKET,
};

/// The subjects events are published under (after a deployment's prefix).
pub mod subjects {
    /// Usage: one event per served request.
    pub const USAGE: &str = "events.usage";
    /// Accounts: opened, limits set.
    pub const ACCOUNT: &str = "events.account";
    /// Billing: grants and deposits.
    pub const BILLING: &str = "events.billing";
    /// Access: members, API keys, provider blocks, trace destinations.
    pub const ACCESS: &str = "events.access";
}

/// Why bytes are not an event this build understands.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not an envelope.
    #[error("not an event envelope: {0}")]
    Envelope(serde_json::Error),
    /// The body does not match its type and version.
    #[error("`{kind}` v{version} body: {source}")]
    Body {
        kind: String,
        version: u16,
        source: serde_json::Error,
    },
    /// A type or version this build does not know.
    #[error("unknown event `{kind}` v{version}: written by a newer build?")]
    Unknown { kind: String, version: u16 },
}

/// Every event, in its current version.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A request was served (or failed) and is billed.
    UsageRecorded(Box<UsageRecorded>),
    /// An account was opened.
    AccountOpened(AccountOpened),
    /// Credits given without payment (demo credits, goodwill).
    CreditsGranted(CreditsGranted),
    /// A paid deposit: credits plus the fee.
    DepositSettled(DepositSettled),
    /// A deposit refunded or disputed, in part or whole.
    DepositReversed(DepositReversed),
    /// A disputed deposit's funds returned.
    DepositReinstated(DepositReinstated),
    /// The account's customer at the payment provider.
    PaymentCustomerSet(PaymentCustomerSet),
    /// A card saved for auto-recharge.
    CardSaved(CardSaved),
    /// The saved card removed.
    CardRemoved(CardRemoved),
    /// Auto-recharge settings.
    AutoRechargeSet(AutoRechargeSet),
    /// An auto-recharge's charge refused.
    RechargeDeclined(RechargeDeclined),
    /// An account's daily spend limit changed.
    DailyLimitSet(DailyLimitSet),
    /// A user was invited to an account.
    MemberInvited(MemberInvited),
    /// A user joined an account.
    MemberJoined(MemberJoined),
    /// A member's role changed.
    MemberRoleSet(MemberRoleSet),
    /// A member was removed from an account.
    MemberRemoved(MemberRemoved),
    /// An open invitation was withdrawn.
    InvitationWithdrawn(InvitationWithdrawn),
    /// An API key was created.
    KeyIssued(KeyIssued),
    /// An API key was revoked.
    KeyRevoked(KeyRevoked),
    /// An API key's own limits changed.
    KeyLimitsSet(KeyLimitsSet),
    /// An account's alert rules changed.
    AlertRulesSet(AlertRulesSet),
    /// The account's requests skip a provider.
    ProviderBlocked(ProviderBlock),
    /// The account's requests may use a provider again.
    ProviderUnblocked(ProviderBlock),
    /// A trace destination created or replaced.
    TelemetryDestinationSet(TelemetryDestinationSet),
    /// A trace destination deleted.
    TelemetryDestinationRemoved(TelemetryDestinationRemoved),
    /// A request's text, for an account capturing it in traces.
    ContentRecorded(Box<ContentRecorded>),
}

/// Applies `$body` to the event's body, whatever its type.
macro_rules! each_body {
    ($event:expr, $e:ident => $body:expr) => {
        match $event {
            Event::UsageRecorded($e) => $body,
            Event::AccountOpened($e) => $body,
            Event::CreditsGranted($e) => $body,
            Event::DepositSettled($e) => $body,
            Event::DepositReversed($e) => $body,
            Event::DepositReinstated($e) => $body,
            Event::PaymentCustomerSet($e) => $body,
            Event::CardSaved($e) => $body,
            Event::CardRemoved($e) => $body,
            Event::AutoRechargeSet($e) => $body,
            Event::RechargeDeclined($e) => $body,
            Event::DailyLimitSet($e) => $body,
            Event::MemberInvited($e) => $body,
            Event::MemberJoined($e) => $body,
            Event::MemberRoleSet($e) => $body,
            Event::MemberRemoved($e) => $body,
            Event::InvitationWithdrawn($e) => $body,
            Event::KeyIssued($e) => $body,
            Event::KeyRevoked($e) => $body,
            Event::KeyLimitsSet($e) => $body,
            Event::AlertRulesSet($e) => $body,
            Event::ProviderBlocked($e) => $body,
            Event::ProviderUnblocked($e) => $body,
            Event::TelemetryDestinationSet($e) => $body,
            Event::TelemetryDestinationRemoved($e) => $body,
            Event::ContentRecorded($e) => $body,
        }
    };
}

impl Event {
    /// The type name and current version written for this event.
    pub fn kind(&self) -> (&'static str, u16) {
        match self {
            Event::UsageRecorded(_) => ("usage_recorded", 2),
            Event::AccountOpened(_) => ("account_opened", 1),
            Event::CreditsGranted(_) => ("credits_granted", 1),
            Event::DepositSettled(_) => ("deposit_settled", 1),
            Event::DepositReversed(_) => ("deposit_reversed", 1),
            Event::DepositReinstated(_) => ("deposit_reinstated", 1),
            Event::PaymentCustomerSet(_) => ("payment_customer_set", 1),
            Event::CardSaved(_) => ("card_saved", 1),
            Event::CardRemoved(_) => ("card_removed", 1),
            Event::AutoRechargeSet(_) => ("auto_recharge_set", 1),
            Event::RechargeDeclined(_) => ("recharge_declined", 1),
            Event::DailyLimitSet(_) => ("daily_limit_set", 1),
            Event::MemberInvited(_) => ("member_invited", 1),
            Event::MemberJoined(_) => ("member_joined", 1),
            Event::MemberRoleSet(_) => ("member_role_set", 1),
            Event::MemberRemoved(_) => ("member_removed", 1),
            Event::InvitationWithdrawn(_) => ("invitation_withdrawn", 1),
            Event::KeyIssued(_) => ("key_issued", 1),
            Event::KeyRevoked(_) => ("key_revoked", 1),
            Event::KeyLimitsSet(_) => ("key_limits_set", 1),
            Event::AlertRulesSet(_) => ("alert_rules_set", 1),
            Event::ProviderBlocked(_) => ("provider_blocked", 1),
            Event::ProviderUnblocked(_) => ("provider_unblocked", 1),
            Event::TelemetryDestinationSet(_) => ("telemetry_destination_set", 1),
            Event::TelemetryDestinationRemoved(_) => ("telemetry_destination_removed", 1),
            Event::ContentRecorded(_) => ("content_recorded", 1),
        }
    }

    /// The subject the event is published under.
    pub fn subject(&self) -> &'static str {
        match self {
            Event::UsageRecorded(_) => subjects::USAGE,
            // Written through the gateway's usage journal, just before the
            // request's usage event.
            Event::ContentRecorded(_) => subjects::USAGE,
            Event::AccountOpened(_) | Event::DailyLimitSet(_) => subjects::ACCOUNT,
            Event::CreditsGranted(_)
            | Event::DepositSettled(_)
            | Event::DepositReversed(_)
            | Event::DepositReinstated(_)
            | Event::PaymentCustomerSet(_)
            | Event::CardSaved(_)
            | Event::CardRemoved(_)
            | Event::AutoRechargeSet(_)
            | Event::RechargeDeclined(_) => subjects::BILLING,
            Event::MemberInvited(_)
            | Event::MemberJoined(_)
            | Event::MemberRoleSet(_)
            | Event::MemberRemoved(_)
            | Event::InvitationWithdrawn(_)
            | Event::KeyIssued(_)
            | Event::KeyRevoked(_)
            | Event::KeyLimitsSet(_)
            | Event::AlertRulesSet(_)
            | Event::ProviderBlocked(_)
            | Event::ProviderUnblocked(_)
            | Event::TelemetryDestinationSet(_)
            | Event::TelemetryDestinationRemoved(_) => subjects::ACCESS,
        }
    }

    /// The account the event concerns.
    pub fn account(&self) -> AccountId {
        each_body!(self, e => e.account)
    }
}

/// An event with its identity and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique per event; publishing or applying it twice has one effect.
    pub id: Uuid,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub event: Event,
}

/// The envelope as written: borrows the body, so encoding copies nothing.
#[derive(Serialize)]
struct WireOut<'a, T> {
    id: Uuid,
    #[serde(serialize_with = "time::serialize")]
    at: DateTime<Utc>,
    #[serde(rename = "type")]
    kind: &'static str,
    v: u16,
    data: &'a T,
}

/// The envelope as read: the body stays raw JSON, borrowed from the
/// record, until its type and version say what it is; it is then parsed
/// once, straight into its type (the ledger decodes every usage event, so
/// a tree of `Value`s and a copy of it per event showed in its profile).
#[derive(Deserialize)]
struct Wire<'a> {
    id: Uuid,
    at: DateTime<Utc>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    v: u16,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl Envelope {
    /// A new event, now, with a fresh id. The id is a UUIDv7: time-ordered,
    /// so the ledger's and the log's indexes on it grow at one end instead
    /// of taking each insert at a random page.
    pub fn new(event: Event) -> Envelope {
        Envelope::new_at(Utc::now(), event)
    }

    /// A new event that happened `at`, with a fresh time-ordered id (see
    /// [`Envelope::new`]).
    pub fn new_at(at: DateTime<Utc>, event: Event) -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            at,
            event,
        }
    }

    /// The JSON written to the log.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.encode_into(&mut out);
        out
    }

    /// Appends the JSON of this envelope to `out`. The body is serialized
    /// straight into the envelope (no intermediate `Value`): this runs once
    /// per served request.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, v) = self.event.kind();
        let (id, at) = (self.id, self.at);
        if let Event::UsageRecorded(usage) = &self.event {
            let mut w = json::JsonWriter(out);
            w.raw(b"{\"id\":").uuid(id).raw(b",\"at\":");
            time::write_quoted(&at, w.0);
            w.raw(b",\"type\":\"usage_recorded\",\"v\":2,\"data\":");
            usage.write_json(&mut w);
            w.raw(b"}");
            return;
        }
        let written = each_body!(&self.event, data => serde_json::to_writer(
            &mut *out,
            &WireOut { id, at, kind, v, data }
        ));
        if let Err(e) = written {
            // Cannot happen (no body has a non-string map key, and a Vec
            // does not fail); if it ever did, readers must see an unreadable
            // record, which the ledger keeps as rejected, not a gap.
            let marker = serde_json::json!({ "unencodable_event": id, "error": e.to_string() });
            out.extend_from_slice(marker.to_string().as_bytes());
        }
    }

    /// Reads an envelope of any version this build knows.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EventError> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(EventError::Envelope)?;
        Envelope::from_wire(wire)
    }

    /// Several envelopes as one log record: a JSON array of them. Publishers
    /// batch this way so the log handles one record per batch, not per event.
    pub fn encode_all(envelopes: &[Envelope]) -> Vec<u8> {
        let mut out = Vec::with_capacity(envelopes.len() * 512 + 2);
        out.push(b'[');
        for (i, envelope) in envelopes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            envelope.encode_into(&mut out);
        }
        out.push(b']');
        out
    }

    /// Every envelope of a log record: one envelope, or an array of them
    /// (see [`Envelope::encode_all`]), each decoded on its own. An array
    /// is read in one pass when every envelope in it is readable (see
    /// `decode.rs`); otherwise each envelope's body is read separately.
    pub fn decode_all(bytes: &[u8]) -> Vec<Result<Envelope, EventError>> {
        let starts_array = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'[');
        if !starts_array {
            return vec![Envelope::decode(bytes)];
        }
        // Checked as text once, a record is read without serde_json checking
        // every string in it again (a tenth of the decoding, by callgrind).
        let one_pass = match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str::<Vec<decode::OnePass>>(text),
            Err(_) => serde_json::from_slice::<Vec<decode::OnePass>>(bytes),
        };
        if let Ok(envelopes) = one_pass {
            return envelopes.into_iter().map(|e| Ok(e.0)).collect();
        }
        // Some envelope or body is unreadable (or a body comes before its
        // type): each is read on its own, so one bad body fails only itself.
        match serde_json::from_slice::<Vec<Wire>>(bytes) {
            Ok(wires) => wires.into_iter().map(Envelope::from_wire).collect(),
            Err(e) => vec![Err(EventError::Envelope(e))],
        }
    }

    fn from_wire(wire: Wire<'_>) -> Result<Envelope, EventError> {
        let body = |source| EventError::Body {
            kind: wire.kind.to_string(),
            version: wire.v,
            source,
        };
        let mut data = serde_json::Deserializer::from_str(wire.data.get());
        let event = match decode::body(&wire.kind, wire.v, &mut data).map_err(body)? {
            Some(event) => event,
            None => {
                return Err(EventError::Unknown {
                    kind: wire.kind.into_owned(),
                    version: wire.v,
                })
            }
        };
        data.end().map_err(body)?;
        Ok(Envelope {
            id: wire.id,
            at: wire.at,
            event,
        })
    }
}
