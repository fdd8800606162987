//! One request as one trace: a root span for the request as the gateway
//! served it, and a child span per provider attempt (skipped, failed, and
//! the one that answered), named and attributed after the OpenTelemetry
//! GenAI semantic conventions, plus the router's own attributes under
//! `modelrouter.*` (listed in the README).
//!
//! Identity is derived, never random, so a span exported twice (delivery
//! is at least once) is the same span:
//! - trace id: the 32 hex digits of the `X-Request-Id` (`req_<32 hex>`),
//!   so pasting the id without `req_` into a backend's trace search finds
//!   it; any other id: the first 16 bytes of its SHA-256;
//! - span ids: the first 8 bytes of SHA-256 of `root:<id>` and
//!   `attempt:<n>:<id>`.
//!
//! Times come from the event: the request ended at the envelope's `at` and
//! began `total_ms` before; attempts ran one after another from the start,
//! each for its recorded latency, and the answering one ran until the end.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use events::{AttemptRecord, Envelope, Event, Outcome, RequestKind, UsageRecorded};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use sha2::{Digest, Sha256};

/// The trace id of the request `request_id` (see the module's doc).
pub fn trace_id(request_id: &str) -> TraceId {
    let hex = request_id.strip_prefix("req_").unwrap_or(request_id);
    if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Ok(id) = TraceId::from_hex(hex) {
            if id != TraceId::INVALID {
                return id;
            }
        }
    }
    let digest = Sha256::digest(request_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[15] |= 1;
    TraceId::from_bytes(bytes)
}

fn span_id(label: &str, request_id: &str) -> SpanId {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update(request_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    bytes[7] |= 1;
    SpanId::from_bytes(bytes)
}

/// The spans of one usage event, root first; none for other events.
pub fn of(envelope: &Envelope) -> Vec<SpanData> {
    with_content(envelope, None)
}

/// [`of`], the root span carrying the request's text as
/// `gen_ai.input.messages` and `gen_ai.output.messages` (JSON, in the GenAI
/// conventions' message shape) when `content` is given.
pub fn with_content(
    envelope: &Envelope,
    content: Option<&events::ContentRecorded>,
) -> Vec<SpanData> {
    let mut spans = plain(envelope);
    if let (Some(root), Some(content)) = (spans.first_mut(), content) {
        let input: Vec<serde_json::Value> = content
            .input
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "parts": [{"type": "text", "content": m.text}]}))
            .collect();
        let mut output = serde_json::json!({"role": "assistant", "parts": [{"type": "text", "content": content.output}]});
        if let Event::UsageRecorded(u) = &envelope.event {
            if let Some(reason) = u.finish_reasons.first() {
                output["finish_reason"] = serde_json::Value::String(reason.clone());
            }
        }
        root.attributes.push(KeyValue::new(
            "gen_ai.input.messages",
            serde_json::Value::Array(input).to_string(),
        ));
        root.attributes.push(KeyValue::new(
            "gen_ai.output.messages",
            serde_json::Value::Array(vec![output]).to_string(),
        ));
    }
    spans
}

fn plain(envelope: &Envelope) -> Vec<SpanData> {
    let Event::UsageRecorded(usage) = &envelope.event else {
        return Vec::new();
    };
    let end: SystemTime = envelope.at.into();
    let start = end
        .checked_sub(Duration::from_millis(usage.timings.total_ms))
        .unwrap_or(end);
    Trace::new(usage, start, end).spans()
}

/// What the request asked for, as `gen_ai.request.model` puts it: `auto`,
/// a tier, or the pinned model.
fn requested(usage: &UsageRecorded) -> &str {
    if usage.auto.is_some() {
        "auto"
    } else {
        usage.tier.as_deref().unwrap_or(&usage.model)
    }
}

fn operation(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Chat => "chat",
        RequestKind::Embeddings => "embeddings",
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Interrupted => "interrupted",
        Outcome::ClientDisconnected => "client_disconnected",
        Outcome::Failed => "failed",
    }
}

/// The provider's public API host, for `server.address`.
pub fn provider_host(provider: &str) -> Option<&'static str> {
    Some(match provider {
        "openai" => "api.openai.com",
        "anthropic" => "api.anthropic.com",
        "google" => "generativelanguage.googleapis.com",
        "xai" => "api.x.ai",
        "bedrock" => "bedrock-runtime.amazonaws.com",
        "groq" => "api.groq.com",
        "cerebras" => "api.cerebras.ai",
        _ => return None,
    })
}

struct Trace<'a> {
    usage: &'a UsageRecorded,
    trace: TraceId,
    root: SpanId,
    start: SystemTime,
    end: SystemTime,
}

impl<'a> Trace<'a> {
    fn new(usage: &'a UsageRecorded, start: SystemTime, end: SystemTime) -> Trace<'a> {
        Trace {
            usage,
            trace: trace_id(&usage.request_id),
            root: span_id("root:", &usage.request_id),
            start,
            end,
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        let u = self.usage;
        let mut spans = Vec::with_capacity(u.attempts.len() + 2);
        spans.push(self.root_span());
        let mut at = self.start;
        for (n, attempt) in u.attempts.iter().enumerate() {
            let until = (at + Duration::from_millis(attempt.latency_ms)).min(self.end);
            spans.push(self.attempt_span(n, attempt, at, until));
            at = until;
        }
        if u.outcome != Outcome::Failed {
            spans.push(self.served_span(u.attempts.len(), at));
        }
        spans
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        id: SpanId,
        parent: SpanId,
        kind: SpanKind,
        name: String,
        times: (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        span_data(
            self.trace, id, parent, kind, name, times, attributes, status,
        )
    }

    fn root_span(&self) -> SpanData {
        let u = self.usage;
        let op = operation(u.kind);
        let mut a = vec![
            KeyValue::new("gen_ai.operation.name", op),
            KeyValue::new("gen_ai.provider.name", u.provider.clone()),
            KeyValue::new("gen_ai.request.model", requested(u).to_owned()),
            KeyValue::new("gen_ai.usage.input_tokens", u.tokens.input as i64),
            KeyValue::new("gen_ai.usage.output_tokens", u.tokens.output as i64),
            KeyValue::new("modelrouter.request_id", u.request_id.clone()),
            KeyValue::new("modelrouter.account_id", u.account.to_string()),
            KeyValue::new("modelrouter.key_id", u.key.clone()),
            KeyValue::new("modelrouter.outcome", outcome_name(u.outcome)),
            KeyValue::new("modelrouter.cost_usd", u.cost.to_string()),
            KeyValue::new("modelrouter.cost_nanos", u.cost.nanos()),
            KeyValue::new("modelrouter.free", u.free),
            KeyValue::new(
                "modelrouter.attempts",
                (u.attempts.len() + usize::from(u.outcome != Outcome::Failed)) as i64,
            ),
            KeyValue::new(
                "modelrouter.tokens.cached_input",
                u.tokens.cached_input as i64,
            ),
            KeyValue::new(
                "modelrouter.tokens.cache_write_input",
                u.tokens.cache_write_input as i64,
            ),
            KeyValue::new("modelrouter.gateway", u.origin.gateway.clone()),
        ];
        if u.outcome != Outcome::Failed {
            a.push(KeyValue::new("gen_ai.response.model", u.model.clone()));
        }
        if let Some(reasons) = finish_reasons(u) {
            a.push(reasons);
        }
        if let Some(prefer) = &u.prefer {
            a.push(KeyValue::new("modelrouter.prefer", prefer.clone()));
        }
        if let Some(tier) = &u.tier {
            a.push(KeyValue::new("modelrouter.tier", tier.clone()));
        }
        if let Some(auto) = &u.auto {
            a.push(KeyValue::new(
                "modelrouter.auto.score",
                i64::from(auto.score),
            ));
            a.push(KeyValue::new("modelrouter.auto.tier", auto.tier.clone()));
            let signals: Vec<StringValue> = auto
                .contributions
                .iter()
                .map(|(name, points)| StringValue::from(format!("{name}:{points:+}")))
                .collect();
            a.push(KeyValue::new(
                "modelrouter.auto.signals",
                Value::Array(Array::String(signals)),
            ));
        }
        if let Some(first) = u.timings.first_byte_ms {
            a.push(KeyValue::new(
                "modelrouter.time_to_first_byte_ms",
                first as i64,
            ));
        }
        let breakers: Vec<StringValue> = u
            .attempts
            .iter()
            .filter(|a| a.skipped)
            .map(|a| StringValue::from(format!("{}/{}", a.provider, a.model)))
            .collect();
        if !breakers.is_empty() {
            a.push(KeyValue::new(
                "modelrouter.skipped",
                Value::Array(Array::String(breakers)),
            ));
        }
        let status = match u.outcome {
            Outcome::Completed | Outcome::ClientDisconnected => Status::Unset,
            Outcome::Interrupted => {
                a.push(KeyValue::new("error.type", "stream_interrupted"));
                Status::error("the provider's stream broke off")
            }
            Outcome::Failed => {
                let why = u
                    .attempts
                    .last()
                    .map(attempt_error)
                    .unwrap_or_else(|| "no_provider".into());
                a.push(KeyValue::new("error.type", why));
                Status::error("no provider answered")
            }
        };
        let name = format!("{op} {}", requested(u));
        self.span(
            self.root,
            SpanId::INVALID,
            SpanKind::Server,
            name,
            (self.start, self.end),
            a,
            status,
        )
    }

    fn attempt_span(
        &self,
        n: usize,
        attempt: &AttemptRecord,
        start: SystemTime,
        end: SystemTime,
    ) -> SpanData {
        let u = self.usage;
        let mut a = attempt_common(u, n, &attempt.provider, &attempt.model);
        a.push(KeyValue::new("error.type", attempt_error(attempt)));
        a.push(KeyValue::new(
            "modelrouter.attempt.skipped",
            attempt.skipped,
        ));
        if let Some(status) = attempt.status {
            a.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if !attempt.error.is_empty() {
            a.push(KeyValue::new(
                "modelrouter.attempt.error",
                attempt.error.clone(),
            ));
        }
        let status = Status::error(if attempt.skipped { "skipped" } else { "failed" });
        self.child(n, &attempt.model, (start, end), a, status)
    }

    /// Attempt `n`'s span, a client span under the root.
    fn child(
        &self,
        n: usize,
        model: &str,
        times: (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        let u = self.usage;
        let name = format!("{} {model}", operation(u.kind));
        let id = span_id(&format!("attempt:{n}:"), &u.request_id);
        self.span(
            id,
            self.root,
            SpanKind::Client,
            name,
            times,
            attributes,
            status,
        )
    }

    fn served_span(&self, n: usize, start: SystemTime) -> SpanData {
        let u = self.usage;
        let mut a = attempt_common(u, n, &u.provider, &u.model);
        a.push(KeyValue::new("gen_ai.response.model", u.model.clone()));
        a.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            u.tokens.input as i64,
        ));
        a.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            u.tokens.output as i64,
        ));
        a.push(KeyValue::new("modelrouter.attempt.skipped", false));
        if let Some(reasons) = finish_reasons(u) {
            a.push(reasons);
        }
        let status = match u.outcome {
            Outcome::Interrupted => {
                a.push(KeyValue::new("error.type", "stream_interrupted"));
                Status::error("the provider's stream broke off")
            }
            _ => Status::Unset,
        };
        self.child(n, &u.model, (start, self.end), a, status)
    }
}

fn finish_reasons(u: &UsageRecorded) -> Option<KeyValue> {
    if u.finish_reasons.is_empty() {
        return None;
    }
    let reasons = u
        .finish_reasons
        .iter()
        .map(|r| StringValue::from(r.clone()))
        .collect();
    Some(KeyValue::new(
        "gen_ai.response.finish_reasons",
        Value::Array(Array::String(reasons)),
    ))
}

fn attempt_common(u: &UsageRecorded, n: usize, provider: &str, model: &str) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("gen_ai.operation.name", operation(u.kind)),
        KeyValue::new("gen_ai.provider.name", provider.to_owned()),
        KeyValue::new("gen_ai.request.model", model.to_owned()),
        KeyValue::new("modelrouter.attempt.index", n as i64),
    ];
    if let Some(host) = provider_host(provider) {
        a.push(KeyValue::new("server.address", host));
    }
    a
}

/// `error.type` of an attempt: the HTTP status it got, else what stopped it.
fn attempt_error(attempt: &AttemptRecord) -> String {
    match attempt.status {
        Some(status) => status.to_string(),
        None if attempt.skipped => "skipped".into(),
        None if attempt.error.to_ascii_lowercase().contains("timed out")
            || attempt.error.to_ascii_lowercase().contains("timeout") =>
        {
            "timeout".into()
        }
        None => "transport".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn span_data(
    trace: TraceId,
    id: SpanId,
    parent: SpanId,
    kind: SpanKind,
    name: String,
    (start, end): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    status: Status,
) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            trace,
            id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Owned(name),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope(),
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("modelrouter")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The span "send test span" sends: a fresh trace, named so it is easy to
/// find, carrying the account and destination it tested.
pub fn test_span(account: events::AccountId, destination: uuid::Uuid) -> SpanData {
    let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());
    let end = SystemTime::now();
    let start = end.checked_sub(Duration::from_millis(1)).unwrap_or(end);
    let attributes = vec![
        KeyValue::new("modelrouter.test", true),
        KeyValue::new("modelrouter.request_id", request_id.clone()),
        KeyValue::new("modelrouter.account_id", account.to_string()),
        KeyValue::new("modelrouter.destination_id", destination.to_string()),
    ];
    span_data(
        trace_id(&request_id),
        span_id("root:", &request_id),
        SpanId::INVALID,
        SpanKind::Internal,
        "modelrouter test span".into(),
        (start, end),
        attributes,
        Status::Ok,
    )
}
