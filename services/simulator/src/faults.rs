//! Fault injection: make a provider (or one of its models) fail, slow down,
//! rate limit or cut its streams.
//!
//! Rules are set with `POST /_sim/faults` (JSON [`FaultRule`]), listed with
//! `GET` and cleared with `DELETE`. A request may carry its own fault in the
//! `x-sim-fault` header (JSON [`Fault`]), which wins over any rule.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use catalog::ProviderId;
use serde::{Deserialize, Serialize};

use crate::Simulator;

/// What to do to a request instead of (or on top of) answering it normally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Answer with this HTTP status and the provider's error body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// With `status`: answer with this raw body (`text/html`) instead of the
    /// provider's error envelope, as a proxy in front of a provider does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// With a 429 (or 503): the `Retry-After` header, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// Wait this long before answering (time to first byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Pause between stream chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_delay_ms: Option<u64>,
    /// Drop the connection after this many stream chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_after_chunks: Option<u32>,
    /// Bedrock streams: flip a bit in this frame (0-based), so its CRC check fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt_frame: Option<u32>,
    /// Apply to the next N matching requests only (default: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// A fault for one provider, or one of its models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The provider the rule applies to.
    pub provider: ProviderId,
    /// The provider-side model id; every model of the provider when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
}

/// The active rules. A rule for a model wins over one for its whole provider.
#[derive(Default)]
pub(crate) struct FaultTable {
    rules: Mutex<Vec<FaultRule>>,
}

impl FaultTable {
    /// The fault for this request: the header's if present, else the best matching rule
    /// (consuming one of its `times`).
    pub(crate) fn take(
        &self,
        headers: &HeaderMap,
        provider: ProviderId,
        model: &str,
    ) -> Result<Option<Fault>, String> {
        if let Some(value) = headers.get("x-sim-fault") {
            let text = value
                .to_str()
                .map_err(|_| "x-sim-fault is not ASCII".to_owned())?;
            return serde_json::from_str(text)
                .map(Some)
                .map_err(|e| format!("x-sim-fault: {e}"));
        }
        let Ok(mut rules) = self.rules.lock() else {
            return Ok(None);
        };
        let matches = |r: &FaultRule, exact: bool| {
            r.provider == provider
                && if exact {
                    r.model.as_deref() == Some(model)
                } else {
                    r.model.is_none()
                }
        };
        let Some(index) = rules
            .iter()
            .position(|r| matches(r, true))
            .or_else(|| rules.iter().position(|r| matches(r, false)))
        else {
            return Ok(None);
        };
        let fault = rules[index].fault.clone();
        if let Some(times) = rules[index].fault.times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                rules.remove(index);
            }
        }
        Ok(Some(fault))
    }
}

impl Fault {
    /// The injected error response, if the fault has a status: its raw
    /// `body` when set, else the provider's own error from `envelope`.
    pub(crate) fn error(
        &self,
        envelope: impl FnOnce(u16) -> axum::response::Response,
    ) -> Option<axum::response::Response> {
        let status = self.status?;
        let response = match &self.body {
            Some(body) => {
                use axum::response::IntoResponse;
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                (
                    code,
                    [(axum::http::header::CONTENT_TYPE, "text/html")],
                    body.clone(),
                )
                    .into_response()
            }
            None => envelope(status),
        };
        Some(with_retry_after(response, self.retry_after_s))
    }
}

/// `response` with `Retry-After: secs`, when an injected fault asks for one.
pub(crate) fn with_retry_after(
    mut response: axum::response::Response,
    secs: Option<u64>,
) -> axum::response::Response {
    if let Some(secs) = secs {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs),
        );
    }
    response
}

/// `GET /_sim/faults`.
pub(crate) async fn list(State(sim): State<Arc<Simulator>>) -> Json<Vec<FaultRule>> {
    Json(
        sim.faults
            .rules
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
    )
}

/// `POST /_sim/faults`: adds a rule, replacing one for the same provider and model.
pub(crate) async fn set(
    State(sim): State<Arc<Simulator>>,
    Json(rule): Json<FaultRule>,
) -> StatusCode {
    if let Ok(mut rules) = sim.faults.rules.lock() {
        rules.retain(|r| !(r.provider == rule.provider && r.model == rule.model));
        rules.push(rule);
    }
    StatusCode::NO_CONTENT
}

/// `DELETE /_sim/faults`: clears every rule.
pub(crate) async fn clear(State(sim): State<Arc<Simulator>>) -> StatusCode {
    if let Ok(mut rules) = sim.faults.rules.lock() {
        rules.clear();
    }
    StatusCode::NO_CONTENT
}
