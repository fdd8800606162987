//! Telemetry events: where an account's request traces go. The control
//! plane writes them; the exporter follows them (see `services/exporter`).
//!
//! Header values (tokens, API keys) never appear in clear: `headers_sealed`
//! is their JSON object sealed with the deployment's telemetry secret, and
//! only the header names travel readable, for the dashboard to list.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AccountId, UserId};

/// How spans are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// OTLP over HTTP, protobuf bodies (`POST …/v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP over HTTP, JSON bodies.
    #[serde(rename = "http/json")]
    HttpJson,
    /// OTLP over gRPC (`TraceService/Export`).
    #[serde(rename = "grpc")]
    Grpc,
}

impl Protocol {
    /// Every protocol, in the order forms list them.
    pub const ALL: [Protocol; 3] = [Protocol::HttpProtobuf, Protocol::HttpJson, Protocol::Grpc];

    /// The name used on the wire and in forms (OpenTelemetry's own).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
            Protocol::Grpc => "grpc",
        }
    }

    /// The protocol named `name`.
    pub fn parse(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Which requests a destination receives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sampling {
    /// Every request.
    All,
    /// Requests that failed (no provider answered) or broke off.
    ErrorsOnly,
    /// This share of requests, 0 < ratio ≤ 1, chosen by the request id (so
    /// the same request is always in or always out).
    Ratio { ratio: f64 },
}

/// `telemetry_destination_set`: a destination created or replaced whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryDestinationSet {
    pub account: AccountId,
    pub destination: Uuid,
    pub name: String,
    /// The vendor preset it was made from (`axiom`, `honeycomb`, …), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    pub protocol: Protocol,
    /// The full URL spans are sent to (`…/v1/traces` for HTTP).
    pub endpoint: String,
    /// The names of the headers sent with every export, for display.
    pub header_names: Vec<String>,
    /// The headers' JSON object, sealed (AES-256-GCM, base64 of nonce and
    /// ciphertext) under the deployment's telemetry secret.
    pub headers_sealed: String,
    pub sampling: Sampling,
    /// Prompt and completion text added to spans (off unless opted in).
    #[serde(default)]
    pub capture_content: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<UserId>,
}

/// `telemetry_destination_removed`: a destination deleted; its backlog is
/// dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryDestinationRemoved {
    pub account: AccountId,
    pub destination: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<UserId>,
}
