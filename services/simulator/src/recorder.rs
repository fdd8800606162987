//! The last request bodies each provider received, so tests can check what a
//! client (or the gateway) really sent: `GET /_sim/requests`, `DELETE` clears.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use catalog::ProviderId;
use serde::Serialize;
use serde_json::Value;

use crate::Simulator;

/// Requests kept; older ones are dropped.
const KEEP: usize = 64;

/// One received request.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// The provider it was addressed to.
    pub provider: ProviderId,
    /// The JSON body (or a string when it was not JSON).
    pub body: Value,
}

#[derive(Default)]
pub(crate) struct Recorder {
    recent: Mutex<VecDeque<Recorded>>,
}

impl Recorder {
    pub(crate) fn record(&self, provider: ProviderId, body: &[u8]) {
        // Very large bodies are summarised: the log is for inspecting fields, not prompts.
        let body = if body.len() > 64 << 10 {
            Value::String(format!("<{} bytes>", body.len()))
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == KEEP {
                recent.pop_front();
            }
            recent.push_back(Recorded { provider, body });
        }
    }
}

/// `GET /_sim/requests`: oldest first.
pub(crate) async fn list(State(sim): State<Arc<Simulator>>) -> Json<Vec<Recorded>> {
    Json(
        sim.recorder
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default(),
    )
}

/// `DELETE /_sim/requests`.
pub(crate) async fn clear(State(sim): State<Arc<Simulator>>) -> StatusCode {
    if let Ok(mut recent) = sim.recorder.recent.lock() {
        recent.clear();
    }
    StatusCode::NO_CONTENT
}
