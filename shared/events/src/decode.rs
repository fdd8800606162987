//! Reading envelopes: which type each `type` and `v` name, and a reader
//! that parses a batch record's bodies in the same pass as the record.
//!
//! [`crate::Wire`] keeps a body raw until its type is known, then parses it:
//! the body's bytes are scanned twice. On the ledger's path (every usage
//! event a gateway serves) the raw scan was 29% of decoding's instructions;
//! reading in one pass takes 12% fewer (`docs/PERFORMANCE.md`).
//! This crate writes `type` and `v` before `data`, so a batch record of its
//! own can be read in one pass ([`OnePass`]); anything else (a body first,
//! an unknown type, a bad body) makes that pass fail, and the caller reads
//! the record envelope by envelope as before.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use uuid::Uuid;

use crate::{Envelope, Event};

/// Reads the body of an event of type `kind`, version `v`, from `data`;
/// `None` (and nothing read) for a type or version this build does not know.
pub(crate) fn body<'de, D: Deserializer<'de>>(
    kind: &str,
    v: u16,
    data: D,
) -> Result<Option<Event>, D::Error> {
    let event = match (kind, v) {
        // v1 bodies are v2 bodies without its additions.
        ("usage_recorded", 1 | 2) => Event::UsageRecorded(Deserialize::deserialize(data)?),
        ("account_opened", 1) => Event::AccountOpened(Deserialize::deserialize(data)?),
        ("credits_granted", 1) => Event::CreditsGranted(Deserialize::deserialize(data)?),
        ("deposit_settled", 1) => Event::DepositSettled(Deserialize::deserialize(data)?),
        ("deposit_reversed", 1) => Event::DepositReversed(Deserialize::deserialize(data)?),
        ("deposit_reinstated", 1) => Event::DepositReinstated(Deserialize::deserialize(data)?),
        ("payment_customer_set", 1) => Event::PaymentCustomerSet(Deserialize::deserialize(data)?),
        ("card_saved", 1) => Event::CardSaved(Deserialize::deserialize(data)?),
        ("card_removed", 1) => Event::CardRemoved(Deserialize::deserialize(data)?),
        ("auto_recharge_set", 1) => Event::AutoRechargeSet(Deserialize::deserialize(data)?),
        ("recharge_declined", 1) => Event::RechargeDeclined(Deserialize::deserialize(data)?),
        ("daily_limit_set", 1) => Event::DailyLimitSet(Deserialize::deserialize(data)?),
        ("member_invited", 1) => Event::MemberInvited(Deserialize::deserialize(data)?),
        ("member_joined", 1) => Event::MemberJoined(Deserialize::deserialize(data)?),
        ("member_role_set", 1) => Event::MemberRoleSet(Deserialize::deserialize(data)?),
        ("member_removed", 1) => Event::MemberRemoved(Deserialize::deserialize(data)?),
        ("invitation_withdrawn", 1) => Event::InvitationWithdrawn(Deserialize::deserialize(data)?),
        ("key_issued", 1) => Event::KeyIssued(Deserialize::deserialize(data)?),
        ("key_revoked", 1) => Event::KeyRevoked(Deserialize::deserialize(data)?),
        ("alert_rules_set", 1) => Event::AlertRulesSet(Deserialize::deserialize(data)?),
        ("key_limits_set", 1) => Event::KeyLimitsSet(Deserialize::deserialize(data)?),
        ("provider_blocked", 1) => Event::ProviderBlocked(Deserialize::deserialize(data)?),
        ("provider_unblocked", 1) => Event::ProviderUnblocked(Deserialize::deserialize(data)?),
        ("telemetry_destination_set", 1) => {
            Event::TelemetryDestinationSet(Deserialize::deserialize(data)?)
        }
        ("telemetry_destination_removed", 1) => {
            Event::TelemetryDestinationRemoved(Deserialize::deserialize(data)?)
        }
        ("content_recorded", 1) => Event::ContentRecorded(Deserialize::deserialize(data)?),
        _ => return Ok(None),
    };
    Ok(Some(event))
}

/// One envelope of a batch record, its body parsed as it is met. Fails
/// (and so fails the whole record) unless `type` and `v` come before
/// `data` and name a known type whose body reads.
pub(crate) struct OnePass(pub Envelope);

impl<'de> Deserialize<'de> for OnePass {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OnePass, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

/// An envelope's fields, as [`crate::Wire`] names them.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Id,
    At,
    Type,
    V,
    Data,
    #[serde(other)]
    Other,
}

/// An envelope's time, read by [`time::parse`](crate::time::parse).
struct Time(DateTime<Utc>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Time, E> {
                crate::time::parse(text)
                    .map(Time)
                    .ok_or_else(|| E::custom(format!("not an RFC 3339 time: {text:?}")))
            }
        }
        deserializer.deserialize_str(TimeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = OnePass;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OnePass, A::Error> {
        let mut id: Option<Uuid> = None;
        let mut at: Option<DateTime<Utc>> = None;
        let mut kind: Option<&'de str> = None;
        let mut v: Option<u16> = None;
        let mut event: Option<Event> = None;
        while let Some(field) = map.next_key::<Field>()? {
            let fresh = match field {
                Field::Id => id.replace(map.next_value()?).is_none(),
                Field::At => at.replace(map.next_value::<Time>()?.0).is_none(),
                Field::Type => kind.replace(map.next_value()?).is_none(),
                Field::V => v.replace(map.next_value()?).is_none(),
                Field::Data => {
                    let (Some(kind), Some(v)) = (kind, v) else {
                        return Err(de::Error::custom("`data` before `type` and `v`"));
                    };
                    event
                        .replace(map.next_value_seed(BodySeed { kind, v })?)
                        .is_none()
                }
                Field::Other => map.next_value::<IgnoredAny>().map(|_| true)?,
            };
            if !fresh {
                return Err(de::Error::custom("a field named twice"));
            }
        }
        match (id, at, event) {
            (Some(id), Some(at), Some(event)) => Ok(OnePass(Envelope { id, at, event })),
            _ => Err(de::Error::custom(
                "an envelope without its id, time or body",
            )),
        }
    }
}

/// Parses a body of a known type straight into its event.
struct BodySeed<'k> {
    kind: &'k str,
    v: u16,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, data: D) -> Result<Event, D::Error> {
        body(self.kind, self.v, data)?.ok_or_else(|| de::Error::custom("an unknown event type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, CreditsGranted};

    fn grant() -> Envelope {
        Envelope::new(Event::CreditsGranted(CreditsGranted {
            account: AccountId::new(),
            amount: "5".parse().expect("an amount"),
            reason: "test".into(),
        }))
    }

    /// A record this crate wrote is read in one pass, to the same events
    /// the envelope-by-envelope reading gives.
    #[test]
    fn a_record_of_ours_is_read_in_one_pass() {
        let envelopes = vec![grant(), grant()];
        let record = Envelope::encode_all(&envelopes);
        let read: Vec<OnePass> = serde_json::from_slice(&record).expect("one pass reads it");
        let read: Vec<Envelope> = read.into_iter().map(|e| e.0).collect();
        assert_eq!(read, envelopes);
    }

    /// What the one pass cannot read exactly as the slow path would, it
    /// refuses: a body before its type, an unknown type, a field twice, a
    /// missing field. (`Envelope::decode_all` then reads each envelope on its
    /// own; `tests/golden.rs` checks what that gives.)
    #[test]
    fn anything_unusual_is_left_to_the_envelope_by_envelope_reading() {
        let ours = String::from_utf8(Envelope::encode_all(&[grant()])).expect("JSON is text");
        let sorted: serde_json::Value = serde_json::from_str(&ours).expect("valid JSON");
        let sorted = serde_json::to_string(&sorted).expect("serializes");
        let unknown = ours.replace("credits_granted", "credits_regifted");
        let twice = ours.replacen("\"v\":1", "\"v\":1,\"v\":1", 1);
        let no_id = ours.replacen("\"id\"", "\"ident\"", 1);
        for record in [sorted, unknown, twice, no_id] {
            assert!(
                serde_json::from_str::<Vec<OnePass>>(&record).is_err(),
                "{record}"
            );
        }
    }
}
