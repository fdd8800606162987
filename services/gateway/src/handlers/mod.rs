//! HTTP handlers of the public API.

pub mod chat;
pub mod health;
pub mod models;

use axum::http::HeaderMap;

use crate::error::GatewayError;
use crate::keys::KeyRing;

/// Checks `Authorization: Bearer mr_sk_…` against the key ring.
pub fn authenticate(keys: &KeyRing, headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(GatewayError::Unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer mr_sk_...`.".into(),
        ));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if keys.verify(key) {
        return Ok(());
    }
    Err(GatewayError::Unauthorized(format!(
        "Incorrect API key provided: {}.",
        redact(key)
    )))
}

/// Shows a key's shape without revealing it: `mr_sk_ab…wxyz`.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}
