//! `usage_recorded`: one per request the gateway served or tried to serve.
//!
//! Version 2 added the `failed` outcome (a numbered request no provider
//! answered: every request that reached a provider attempt has an event,
//! so a missing number means a lost event) and the origin's `instance`.
//! A version 1 body is a valid version 2 body.

use money::Money;
use serde::{Deserialize, Serialize};

use crate::json::JsonWriter;
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
    /// The request's `prefer` (chat; `None` for embeddings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<String>,
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
    /// Why the model stopped, per choice, as OpenAI names it (`stop`,
    /// `length`, `tool_calls`, `content_filter`); empty when unknown
    /// (embeddings, failures, a stream that broke off).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finish_reasons: Vec<String>,
    /// The OpenAI `user` field: who the request was made for (see
    /// `attribution`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The account's labels for the request (`metadata` pairs as
    /// `key=value`, and the `X-Model-Router-Tags` header).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The gateway that served it and its position in that gateway's
    /// sequence, so the gateway can tell which of its spend the ledger's
    /// account state already includes.
    pub origin: Origin,
}

impl UsageRecorded {
    /// Writes the same JSON as its `Serialize` impl, faster (see `json`).
    pub(crate) fn write_json(&self, w: &mut JsonWriter<'_>) {
        w.raw(b"{\"request_id\":").str(&self.request_id);
        w.raw(b",\"account\":").uuid(self.account.0);
        w.raw(b",\"key\":").str(&self.key);
        w.raw(match self.kind {
            RequestKind::Chat => b",\"kind\":\"chat\"" as &[u8],
            RequestKind::Embeddings => b",\"kind\":\"embeddings\"",
        });
        w.raw(b",\"model\":").str(&self.model);
        w.raw(b",\"provider\":").str(&self.provider);
        if let Some(tier) = &self.tier {
            w.raw(b",\"tier\":").str(tier);
        }
        if let Some(auto) = &self.auto {
            w.raw(b",\"auto\":{\"score\":").u64(u64::from(auto.score));
            w.raw(b",\"tier\":").str(&auto.tier);
            w.raw(b",\"contributions\":[");
            for (i, (signal, points)) in auto.contributions.iter().enumerate() {
                w.raw(if i == 0 { b"[" } else { b",[" }).str(signal);
                w.raw(b",").i64(i64::from(*points)).raw(b"]");
            }
            w.raw(b"]}");
        }
        if let Some(prefer) = &self.prefer {
            w.raw(b",\"prefer\":").str(prefer);
        }
        let t = &self.tokens;
        w.raw(b",\"tokens\":{\"input\":").u64(t.input);
        w.raw(b",\"cached_input\":").u64(t.cached_input);
        w.raw(b",\"cache_write_input\":").u64(t.cache_write_input);
        w.raw(b",\"output\":").u64(t.output).raw(b"}");
        w.raw(b",\"cost\":").money(self.cost);
        w.raw(b",\"free\":").bool(self.free);
        w.raw(b",\"attempts\":[");
        for (i, a) in self.attempts.iter().enumerate() {
            w.raw(if i == 0 {
                b"{\"provider\":"
            } else {
                b",{\"provider\":"
            })
            .str(&a.provider);
            w.raw(b",\"model\":").str(&a.model);
            if let Some(status) = a.status {
                w.raw(b",\"status\":").u64(u64::from(status));
            }
            w.raw(b",\"error\":").str(&a.error);
            w.raw(b",\"latency_ms\":").u64(a.latency_ms);
            w.raw(b",\"skipped\":").bool(a.skipped).raw(b"}");
        }
        w.raw(b"],\"timings\":{\"total_ms\":")
            .u64(self.timings.total_ms);
        if let Some(first) = self.timings.first_byte_ms {
            w.raw(b",\"first_byte_ms\":").u64(first);
        }
        w.raw(match self.outcome {
            Outcome::Completed => b"},\"outcome\":\"completed\"" as &[u8],
            Outcome::Interrupted => b"},\"outcome\":\"interrupted\"",
            Outcome::ClientDisconnected => b"},\"outcome\":\"client_disconnected\"",
            Outcome::Failed => b"},\"outcome\":\"failed\"",
        });
        if !self.finish_reasons.is_empty() {
            w.raw(b",\"finish_reasons\":[");
            for (i, reason) in self.finish_reasons.iter().enumerate() {
                w.raw(if i == 0 { b"" } else { b"," }).str(reason);
            }
            w.raw(b"]");
        }
        if let Some(user) = &self.user {
            w.raw(b",\"user\":").str(user);
        }
        if !self.tags.is_empty() {
            w.raw(b",\"tags\":[");
            for (i, tag) in self.tags.iter().enumerate() {
                w.raw(if i == 0 { b"" } else { b"," }).str(tag);
            }
            w.raw(b"]");
        }
        // The origin comes last, gateway then seq: the gateway's journal
        // reads the sequence back from there without parsing the event.
        w.raw(b",\"origin\":{\"gateway\":")
            .str(&self.origin.gateway);
        w.raw(b",\"seq\":").u64(self.origin.seq);
        if let Some(instance) = &self.origin.instance {
            w.raw(b",\"instance\":").str(instance);
        }
        w.raw(b"}}");
    }

    /// Drops detail billing does not need, step by step (`level` 1 to
    /// [`SLIMMEST`]): attempts' error texts, then `auto`'s signal list, then
    /// every attempt but the last. For an event log whose records are
    /// smaller than this event; tokens, cost and origin always stay.
    pub fn slim(&mut self, level: u8) {
        if level >= 1 {
            for attempt in &mut self.attempts {
                attempt.error = cap(&attempt.error, 40);
            }
        }
        if level >= 2 {
            if let Some(auto) = &mut self.auto {
                auto.contributions.clear();
            }
        }
        if level >= 3 {
            let keep = self.attempts.len().saturating_sub(1);
            self.attempts.drain(..keep);
            for attempt in &mut self.attempts {
                attempt.error.clear();
            }
        }
    }
}

/// The last slimming level of [`UsageRecorded::slim`].
pub const SLIMMEST: u8 = 3;

/// The most characters of an upstream error an attempt keeps: enough to
/// say what went wrong, small enough that an HTML error page from a proxy
/// does not make the event kilobytes long.
pub const MAX_ERROR_CHARS: usize = 300;

/// The most contributions an auto decision carries: its largest, enough to
/// say why, while a model's explanation may name many more features.
pub const AUTO_CONTRIBUTIONS: usize = 8;

/// `text` cut to at most `chars` characters, marked with `…` when cut.
pub fn cap(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_owned(),
        Some((end, _)) => {
            let mut out = text[..end].to_owned();
            out.push('…');
            out
        }
    }
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
    /// The client hung up before the answer was complete; what the provider
    /// generated is billed (a whole response in full, a stream what was
    /// streamed).
    ClientDisconnected,
    /// No candidate answered: nothing is billed (v2).
    Failed,
}

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The gateway's id, stable across its restarts on one data dir.
    pub gateway: String,
    /// 1, 2, 3… per gateway, taken when the request's first attempt was
    /// about to start; a number without an event is a lost event.
    pub seq: u64,
    /// The gateway process (one run of `gateway`), so a gateway can tell
    /// which of its own events an account state includes (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> UsageRecorded {
        let tricky = [
            "plain",
            "quote \" and \\ backslash",
            "tab\tnew\nline\u{1}",
            "ünïcødé ✓",
        ];
        let pick = |n: u64| tricky[(n % 4) as usize].to_owned();
        UsageRecorded {
            request_id: format!("req_{i}"),
            account: AccountId::new(),
            key: pick(i),
            kind: if i.is_multiple_of(2) {
                RequestKind::Chat
            } else {
                RequestKind::Embeddings
            },
            model: pick(i + 1),
            provider: "openai".into(),
            tier: (!i.is_multiple_of(3)).then(|| pick(i + 2)),
            auto: (i % 2 == 1).then(|| AutoDecision {
                score: (i % 101) as u8,
                tier: "standard".into(),
                contributions: (0..i % 3).map(|n| (pick(n), n as i32 - 1)).collect(),
            }),
            prefer: (!i.is_multiple_of(5)).then(|| pick(i + 3)),
            tokens: Tokens {
                input: i * 7,
                cached_input: i % 5,
                cache_write_input: i % 2,
                output: i,
            },
            cost: Money::from_nanos((i * 12_345) as i64 - 20_000),
            free: i.is_multiple_of(4),
            attempts: (0..i % 3)
                .map(|n| AttemptRecord {
                    provider: pick(n),
                    model: pick(n + 3),
                    status: (n % 2 == 0).then_some(503),
                    error: pick(n + 1),
                    latency_ms: n * 10,
                    skipped: n % 2 == 1,
                })
                .collect(),
            timings: Timings {
                total_ms: i * 3,
                first_byte_ms: i.is_multiple_of(2).then_some(i),
            },
            outcome: match i % 4 {
                0 => Outcome::Completed,
                1 => Outcome::Interrupted,
                2 => Outcome::Failed,
                _ => Outcome::ClientDisconnected,
            },
            finish_reasons: (0..i % 3).map(|n| pick(n + 2)).collect(),
            user: (i % 3 == 1).then(|| pick(i + 2)),
            tags: (0..i % 4).map(|n| pick(n + i)).collect(),
            origin: Origin {
                gateway: pick(i + 3),
                seq: i,
                instance: i.is_multiple_of(3).then(|| pick(i + 1)),
            },
        }
    }

    #[test]
    fn slimming_keeps_the_bill_and_drops_detail() {
        let mut event = sample(5);
        event.attempts = (0..3)
            .map(|n| AttemptRecord {
                provider: "openai".into(),
                model: format!("m{n}"),
                status: Some(502),
                error: "<html>".repeat(500),
                latency_ms: 1,
                skipped: false,
            })
            .collect();
        let before = (event.tokens, event.cost, event.origin.clone());
        let mut sizes = Vec::new();
        for level in 1..=SLIMMEST {
            event.slim(level);
            sizes.push(serde_json::to_vec(&event).unwrap().len());
        }
        assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "{sizes:?}");
        assert_eq!(event.attempts.len(), 1);
        assert_eq!(event.attempts[0].model, "m2");
        assert_eq!((event.tokens, event.cost, event.origin), before);
        assert_eq!(cap("abcdef", 3), "abc…");
        assert_eq!(cap("ünï", 3), "ünï");
    }

    #[test]
    fn the_fast_writer_writes_what_serde_writes() {
        for i in 0..500 {
            let event = sample(i);
            let mut out = Vec::new();
            event.write_json(&mut JsonWriter(&mut out));
            let fast: serde_json::Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
            assert_eq!(fast, serde_json::to_value(&event).unwrap(), "sample {i}");
            assert_eq!(
                serde_json::from_slice::<UsageRecorded>(&out).unwrap(),
                event
            );
        }
    }
}
