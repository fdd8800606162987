//! `usage_recorded`: one per request the gateway served or tried to serve.

use money::Money;
use serde::{Deserialize, Serialize};

use crate::AccountId;

/// What a request cost and how it was routed, for billing, the dashboard,
/// traces and reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecorded {
    /// The gateway's `X-Request-Id`.
    pub request_id: String,
    /// Who pays.
    pub account: AccountId,
    /// Which API key was used: the first 12 hex characters of its digest.
    pub key: String,
    /// Chat or embeddings.
    pub kind: RequestKind,
    /// The catalog model that answered (the last one tried when none did).
    pub model: String,
    /// Its provider.
    pub provider: String,
    /// The tier asked for or chosen by `auto`; `None` for a pinned model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// How `auto` decided, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoDecision>,
    /// Tokens billed.
    pub tokens: Tokens,
    /// What the account is charged (zero for free models and failures).
    pub cost: Money,
    /// Served by a free model.
    pub free: bool,
    /// Every candidate tried or skipped before the one that answered.
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// How long it took.
    pub timings: Timings,
    /// How it ended.
    pub outcome: Outcome,
    /// The gateway that served it and its position in that gateway's
    /// sequence, so the gateway can tell which of its spend the ledger's
    /// account state already includes.
    pub origin: Origin,
}

/// The kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Chat,
    Embeddings,
}

/// `model: "auto"`'s decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoDecision {
    /// 0–100.
    pub score: u8,
    /// The tier it mapped to.
    pub tier: String,
    /// Points per signal, largest first.
    pub contributions: Vec<(String, i32)>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// All input tokens, cached ones included.
    pub input: u64,
    /// Of which read from the prompt cache.
    #[serde(default)]
    pub cached_input: u64,
    /// Of which written to the prompt cache.
    #[serde(default)]
    pub cache_write_input: u64,
    /// Output tokens.
    pub output: u64,
}

/// One candidate that did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub provider: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub error: String,
    pub latency_ms: u64,
    #[serde(default)]
    pub skipped: bool,
}

/// Durations of the request as the gateway saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Request received → response finished (or the client left).
    pub total_ms: u64,
    /// Request received → first byte to the client (streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<u64>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered in full.
    Completed,
    /// The provider's stream broke off; what was generated is billed.
    Interrupted,
    /// The client hung up mid-stream; what was generated is billed.
    ClientDisconnected,
}

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The gateway process's id (stable across its restarts when configured).
    pub gateway: String,
    /// 1, 2, 3… per gateway, in publish order.
    pub seq: u64,
}
