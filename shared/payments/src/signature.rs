//! Stripe's webhook signatures, checked as Stripe documents them: the
//! `Stripe-Signature` header holds `t=<unix seconds>` and one or more
//! `v1=<hex HMAC-SHA256 of "t.payload" under the endpoint secret>` (several
//! while Stripe rolls a secret); `v0` and other schemes are ignored. A
//! signature is good if any `v1` matches under any of the configured
//! secrets (so a rotated secret keeps working until it is retired) and the
//! timestamp is within the tolerance of now (replays of old deliveries are
//! refused).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's default tolerance: five minutes.
pub const TOLERANCE_S: i64 = 300;

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature's timestamp is {0} s away from now (at most {TOLERANCE_S} s allowed)")]
    Stale(i64),
    #[error("no v1 signature matches the payload under the configured secrets")]
    Mismatch,
}

/// The header Stripe would send for `payload` signed with `secret` at `t`.
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    format!("t={t},v1={}", hex::encode(mac(payload, secret, t)))
}

fn mac(payload: &[u8], secret: &str, t: i64) -> Vec<u8> {
    keyed(payload, secret, t).finalize().into_bytes().to_vec()
}

/// The HMAC of `t.payload` under `secret`, not yet finalized.
fn keyed(payload: &[u8], secret: &str, t: i64) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// Checks `header` for `payload` against `secrets` at unix time `now`.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[String],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => t = value.parse::<i64>().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(value) {
                    v1.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // `verify_slice` compares in constant time.
    let matched = secrets.iter().any(|secret| {
        v1.iter()
            .any(|candidate| keyed(payload, secret, t).verify_slice(candidate).is_ok())
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let skew = now - t;
    if skew.abs() > TOLERANCE_S {
        return Err(SignatureError::Stale(skew));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_668_000;
    const PAYLOAD: &[u8] = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_valid_signature_passes() {
        let header = sign(PAYLOAD, "whsec_current", NOW);
        assert_eq!(
            verify(PAYLOAD, Some(&header), &secrets(&["whsec_current"]), NOW),
            Ok(())
        );
        // Stripe's own example format: v0 alongside is ignored.
        let with_v0 =
            format!("{header},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(
            verify(PAYLOAD, Some(&with_v0), &secrets(&["whsec_current"]), NOW),
            Ok(())
        );
    }

    #[test]
    fn stale_tampered_missing_and_malformed_signatures_fail() {
        let header = sign(PAYLOAD, "whsec_current", NOW);
        let s = secrets(&["whsec_current"]);
        assert_eq!(
            verify(PAYLOAD, Some(&header), &s, NOW + TOLERANCE_S + 1),
            Err(SignatureError::Stale(TOLERANCE_S + 1))
        );
        assert_eq!(
            verify(PAYLOAD, Some(&header), &s, NOW - TOLERANCE_S - 1),
            Err(SignatureError::Stale(-TOLERANCE_S - 1))
        );
        assert!(matches!(
            verify(PAYLOAD, Some(&header), &s, NOW + TOLERANCE_S),
            Ok(())
        ));
        let tampered = br#"{"id":"evt_1","type":"charge.refunded"}"#;
        assert_eq!(
            verify(tampered, Some(&header), &s, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(PAYLOAD, Some(&header), &secrets(&["whsec_other"]), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(PAYLOAD, None, &s, NOW), Err(SignatureError::Missing));
        for bad in ["", "v1=abc", "t=123", "t=x,v1=00", "garbage"] {
            assert!(verify(PAYLOAD, Some(bad), &s, NOW).is_err(), "{bad:?}");
        }
        // A signature for another timestamp than the one claimed.
        let moved = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(
            verify(PAYLOAD, Some(&moved), &s, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_of_several_signatures_under_any_configured_secret_passes() {
        // Stripe rolling the secret signs with both; we know either one.
        let old = sign(PAYLOAD, "whsec_old", NOW);
        let new = sign(PAYLOAD, "whsec_new", NOW);
        let both = format!("{old},{}", new.split(',').nth(1).unwrap());
        assert_eq!(
            verify(PAYLOAD, Some(&both), &secrets(&["whsec_new"]), NOW),
            Ok(())
        );
        assert_eq!(
            verify(PAYLOAD, Some(&both), &secrets(&["whsec_old"]), NOW),
            Ok(())
        );
        // We rotated ours: the old secret still accepted until retired.
        assert_eq!(
            verify(
                PAYLOAD,
                Some(&old),
                &secrets(&["whsec_new", "whsec_old"]),
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            verify(PAYLOAD, Some(&old), &secrets(&["whsec_new"]), NOW),
            Err(SignatureError::Mismatch)
        );
    }
}
