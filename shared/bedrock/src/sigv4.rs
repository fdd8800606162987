//! AWS Signature Version 4 for Bedrock (service `bedrock`), on top of the
//! maintained `aws-sigv4` crate: [`sign`] for the gateway's requests and
//! [`verify`] for the simulator, which recomputes a request's signature from
//! what it received, as AWS does.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{sign as aws_sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// The SigV4 service name of Bedrock Runtime.
pub const SERVICE: &str = "bedrock";

/// Requests signed further than this from the server's clock are refused.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// An access key and its secret (and a session token for temporary ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

fn signature(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(Vec<(String, String)>, String), String> {
    let identity: Identity = AwsCredentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        None,
        "model-router",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, signature) = aws_sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let (added, _) = instructions.into_parts();
    let added = added
        .into_iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect();
    Ok((added, signature))
}

/// The headers (`authorization`, `x-amz-date`, and `x-amz-security-token`
/// for temporary credentials) that sign this request at `time`.
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    signature(method, url, headers, body, credentials, region, time).map(|(added, _)| added)
}

/// Why a request's signature was refused: AWS's error type and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub message: String,
}

fn refuse(kind: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        message: message.into(),
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let mut scope = credential?.split('/');
    let access_key_id = scope.next()?;
    let _date = scope.next()?;
    let region = scope.next()?;
    let service = scope.next()?;
    Some(Authorization {
        access_key_id,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

/// Checks a received request's SigV4 signature. `url` is the request as
/// received (`http://host/path?query`, path still percent-encoded), `headers`
/// all its headers (lower-case names), `known` finds the secret of an access key.
pub fn verify(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    known: impl Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<(), Refusal> {
    let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let Some(authorization) = header("authorization") else {
        return Err(refuse(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let auth = parse_authorization(authorization).ok_or_else(|| {
        refuse(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        )
    })?;
    let Some(mut credentials) = known(auth.access_key_id) else {
        return Err(refuse(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    if auth.service != SERVICE {
        return Err(refuse(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{SERVICE}'."),
        ));
    }
    let date = header("x-amz-date").unwrap_or_default();
    let time = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map(|t| SystemTime::from(t.and_utc()))
        .map_err(|_| {
            refuse(
                "IncompleteSignatureException",
                "X-Amz-Date is missing or malformed.",
            )
        })?;
    let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(refuse(
            "InvalidSignatureException",
            format!("Signature expired: {date} is now earlier than the allowed window."),
        ));
    }
    credentials.session_token = header("x-amz-security-token").map(str::to_owned);
    // The signer adds the date and the token itself; every other signed header goes in as received.
    let signed: Vec<(&str, &str)> = auth
        .signed_headers
        .iter()
        .filter(|name| !matches!(**name, "x-amz-date" | "x-amz-security-token"))
        .map(|name| (*name, header(name).unwrap_or_default()))
        .collect();
    let (_, expected) = signature(method, url, &signed, body, &credentials, auth.region, time)
        .map_err(|e| refuse("InvalidSignatureException", e))?;
    if expected != auth.signature {
        return Err(refuse(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let now = SystemTime::now();
        let url = "http://127.0.0.1:9/model/us.amazon.nova-lite-v1%3A0/converse";
        let base = [
            ("content-type", "application/json"),
            ("host", "127.0.0.1:9"),
        ];
        let body = br#"{"messages":[]}"#;
        let added = sign("POST", url, &base, body, &credentials(), "us-east-1", now).unwrap();
        let mut headers: Vec<(&str, &str)> = base.to_vec();
        headers.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let known = |id: &str| (id == "AKIDEXAMPLE").then(credentials);
        assert_eq!(verify("POST", url, &headers, body, known, now), Ok(()));

        let tampered = verify("POST", url, &headers, br#"{"messages":[1]}"#, known, now);
        assert_eq!(tampered.unwrap_err().kind, "InvalidSignatureException");
        let other_path = url.replace("converse", "converse-stream");
        assert!(verify("POST", &other_path, &headers, body, known, now).is_err());
        let stranger = |_: &str| None;
        assert_eq!(
            verify("POST", url, &headers, body, stranger, now)
                .unwrap_err()
                .kind,
            "UnrecognizedClientException"
        );
        let late = now + Duration::from_secs(3600);
        assert!(verify("POST", url, &headers, body, known, late).is_err());
        assert_eq!(
            verify("POST", url, &base, body, known, now)
                .unwrap_err()
                .kind,
            "MissingAuthenticationTokenException"
        );
    }
}
