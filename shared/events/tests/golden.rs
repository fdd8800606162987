//! Every version ever written keeps decoding, and re-encodes to the same JSON.

use events::{Envelope, Event, EventError};

const V1: &str = include_str!("fixtures/v1.jsonl");
const V2: &str = include_str!("fixtures/v2.jsonl");

/// Decodes `line` and checks it re-encodes to the same JSON, written as
/// the current version of its type (an older body is a valid newer one).
fn round_trip(line: &str) -> Envelope {
    let envelope = Envelope::decode(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
    let again: serde_json::Value = serde_json::from_slice(&envelope.encode()).unwrap();
    let mut original: serde_json::Value = serde_json::from_str(line).unwrap();
    original["v"] = envelope.event.kind().1.into();
    assert_eq!(again, original);
    envelope
}

#[test]
fn every_v2_event_decodes_and_round_trips() {
    let usage = round_trip(V2.lines().next().unwrap());
    let Event::UsageRecorded(usage) = usage.event else {
        panic!("not usage")
    };
    assert_eq!(usage.outcome, events::Outcome::Failed);
    assert_eq!(usage.origin.instance.as_deref(), Some("5e6f7a8b9c0d"));
    // finish_reasons, an optional v2 addition.
    let Event::UsageRecorded(second) = round_trip(V2.lines().nth(1).unwrap()).event else {
        panic!("not usage")
    };
    assert_eq!(second.finish_reasons, ["stop", "length"]);
    assert!(usage.finish_reasons.is_empty());
}

#[test]
fn every_v1_event_decodes_and_round_trips() {
    let mut kinds = Vec::new();
    for line in V1.lines() {
        kinds.push(round_trip(line).event.kind().0);
    }
    assert_eq!(
        kinds,
        [
            "usage_recorded",
            "account_opened",
            "credits_granted",
            "deposit_settled",
            "daily_limit_set",
            "member_invited",
            "member_joined",
            "member_role_set",
            "key_issued",
            "key_revoked",
            "provider_blocked",
            "provider_unblocked",
            "member_removed",
            "invitation_withdrawn",
            "deposit_reversed",
            "deposit_reinstated",
            "payment_customer_set",
            "card_saved",
            "card_removed",
            "auto_recharge_set",
            "recharge_declined",
            "telemetry_destination_set",
            "telemetry_destination_removed"
        ]
    );
    let usage = Envelope::decode(V1.lines().next().unwrap().as_bytes()).unwrap();
    let Event::UsageRecorded(usage) = usage.event else {
        panic!("not usage")
    };
    assert_eq!(usage.cost.nanos(), 2_500_000);
    assert_eq!(usage.attempts[0].status, Some(503));
    assert_eq!(
        usage.auto.unwrap().contributions[0],
        ("code_blocks".to_owned(), 12)
    );
}

#[test]
fn unknown_types_and_future_versions_are_errors_not_skips() {
    let future = V1.lines().nth(1).unwrap().replace("\"v\":1", "\"v\":9");
    assert!(matches!(
        Envelope::decode(future.as_bytes()),
        Err(EventError::Unknown { version: 9, .. })
    ));
    let broken = V1.lines().nth(2).unwrap().replace("\"25\"", "\"twenty\"");
    let err = Envelope::decode(broken.as_bytes()).unwrap_err().to_string();
    assert!(
        err.contains("credits_granted") && err.contains("v1"),
        "{err}"
    );
    assert!(matches!(
        Envelope::decode(b"{}"),
        Err(EventError::Envelope(_))
    ));
}

#[test]
fn a_batch_record_holds_envelopes_that_decode_one_by_one() {
    let envelopes: Vec<Envelope> = V1
        .lines()
        .map(|l| Envelope::decode(l.as_bytes()).unwrap())
        .collect();
    let batch = Envelope::encode_all(&envelopes);
    let decoded: Vec<Envelope> = Envelope::decode_all(&batch)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(decoded, envelopes);
    // A single envelope is a record too.
    assert_eq!(
        Envelope::decode_all(V1.lines().next().unwrap().as_bytes()).len(),
        1
    );
    // One bad body spoils only itself.
    let bad = String::from_utf8(batch)
        .unwrap()
        .replacen("\"25\"", "\"x\"", 1);
    let results = Envelope::decode_all(bad.as_bytes());
    assert_eq!(results.len(), envelopes.len());
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    // A record that is not text (a byte that is no UTF-8 inside a string)
    // is one error, read or not as text first.
    let mut garbled = Envelope::encode_all(&envelopes);
    let at = garbled
        .windows(4)
        .position(|w| w == b"\"25\"")
        .expect("a string to garble");
    garbled[at + 1] = 0xff;
    let results = Envelope::decode_all(&garbled);
    assert!(results.len() == 1 && results[0].is_err(), "{results:?}");
}

/// A body is read whatever the order of the envelope's fields (another
/// writer may put `data` before `type`, as a sorted map does) and with
/// escapes in its fields; each decodes to what the record in our own
/// order decodes to.
#[test]
fn field_order_and_escapes_do_not_change_what_decodes() {
    for line in V1.lines().chain(V2.lines()) {
        let ours = Envelope::decode(line.as_bytes()).unwrap();
        let sorted: serde_json::Value = serde_json::from_str(line).unwrap();
        let sorted = serde_json::to_string(&sorted).unwrap();
        assert!(
            sorted.find("\"data\"") < sorted.find("\"type\""),
            "{sorted}"
        );
        assert_eq!(Envelope::decode(sorted.as_bytes()).unwrap(), ours);
        // The type's first letter written as a `\uXXXX` escape.
        let at = sorted.find("\"type\":\"").unwrap() + "\"type\":\"".len();
        let first = sorted[at..].chars().next().unwrap();
        let escaped = format!(
            "{}\\u{:04x}{}",
            &sorted[..at],
            first as u32,
            &sorted[at + first.len_utf8()..]
        );
        assert_eq!(
            Envelope::decode(escaped.as_bytes()).unwrap(),
            ours,
            "{escaped}"
        );
        // The same in a batch record, beside an envelope in our order.
        for record in [&sorted, &escaped] {
            let batch = format!("[{line},{record}]");
            let decoded: Vec<Envelope> = Envelope::decode_all(batch.as_bytes())
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(decoded, [ours.clone(), ours.clone()], "{batch}");
        }
    }
}

/// Every fixture, v1 and v2, in one batch record decodes to what each
/// line decodes to alone (the record is read in one pass, `decode.rs`).
#[test]
fn a_batch_of_every_fixture_decodes_as_its_lines_do() {
    let envelopes: Vec<Envelope> = V1
        .lines()
        .chain(V2.lines())
        .map(|l| Envelope::decode(l.as_bytes()).unwrap())
        .collect();
    let decoded: Vec<Envelope> = Envelope::decode_all(&Envelope::encode_all(&envelopes))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(decoded, envelopes);
}
