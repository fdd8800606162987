//! Relays a provider's stream to the client, whatever the ingress's wire
//! format: chunks go out with our model id as they come, the usage is billed
//! once however the stream ends (finished, broken off, or the client gone),
//! and the ingress's [`Encoder`] turns each [`Relayed`] item into its bytes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use catalog::Model;
use futures_util::stream::{self, StreamExt};
use openai::{ChatCompletionChunk, ChatRequest, Usage};

use super::{served, token_usage, Ending};
use crate::error::Attempt;
use crate::health::Permit;
use crate::providers::{ChunkStream, ProviderError};
use crate::usage::Recording;
use crate::Gateway;
use events::Outcome;
use money::Money;

/// One step of a relayed stream, in order: chunks, then exactly one of
/// `Finished` or `BrokeOff`.
#[derive(Debug)]
pub enum Relayed {
    /// A chunk with choices, model id rewritten to ours.
    Chunk(ChatCompletionChunk),
    /// The stream ended: its usage (with `cost`) in a chunk without choices.
    Finished(ChatCompletionChunk),
    /// The provider broke off: the usage so far (billed), and why.
    BrokeOff {
        usage: ChatCompletionChunk,
        error: ProviderError,
    },
}

/// Turns relayed items into one ingress's SSE bytes.
pub trait Encoder: Send + 'static {
    /// The bytes for `item` (may be empty).
    fn encode(&mut self, item: Relayed) -> Bytes;
}

/// The relay of one stream whose first chunk already arrived.
pub struct Relay {
    /// The request's span, for what the relay logs.
    span: tracing::Span,
    /// Records the usage once the stream ends, however it ends.
    record: Option<(Arc<Recording>, Vec<Attempt>)>,
    /// The first chunk, received while choosing the candidate, not yet sent.
    first: Option<ChatCompletionChunk>,
    upstream: ChunkStream,
    gateway: Arc<Gateway>,
    request: Arc<ChatRequest>,
    model: Arc<Model>,
    /// The first chunk without its choices: the usage chunk reuses its id and timestamp.
    last: Option<ChatCompletionChunk>,
    usage: Option<Usage>,
    /// Text generated so far, to count output if the provider sends no usage.
    generated: String,
    /// Why the model stopped, per choice, as the stream said.
    finish_reasons: Vec<String>,
    done: bool,
    /// Told how the stream ended; dropped unreported if the client leaves.
    permit: Option<Permit>,
    /// When the first chunk came, after the attempt started.
    ttft: Duration,
}

/// What a relay starts from.
pub struct Start {
    /// For the token counter, when the provider reports no usage.
    pub gateway: Arc<Gateway>,
    /// The model streaming.
    pub model: Arc<Model>,
    /// The request, whose prompt is counted when the provider reports no usage.
    pub request: Arc<ChatRequest>,
    /// The chunk that made the attempt count as answered.
    pub first: ChatCompletionChunk,
    /// The rest of the provider's stream.
    pub upstream: ChunkStream,
    /// The model's health, told how the stream ends.
    pub permit: Permit,
    /// Where the usage goes, with the attempts before this one.
    pub record: Option<(Arc<Recording>, Vec<Attempt>)>,
}

impl Relay {
    /// A relay of `start`'s stream.
    pub fn new(start: Start) -> Relay {
        Relay {
            span: tracing::Span::current(),
            ttft: start.permit.started().elapsed(),
            record: start.record,
            permit: Some(start.permit),
            first: Some(start.first),
            upstream: start.upstream,
            gateway: start.gateway,
            request: start.request,
            model: start.model,
            last: None,
            usage: None,
            generated: String::new(),
            finish_reasons: Vec::new(),
            done: false,
        }
    }

    /// The response streaming this relay as `text/event-stream`, encoded by `encoder`.
    pub fn into_response(self, mut encoder: impl Encoder) -> Response {
        let body = stream::unfold(self, |mut relay| async move {
            let item = relay.next().await?;
            Some((item, relay))
        })
        .map(move |item| Ok::<_, std::convert::Infallible>(encoder.encode(item)));
        let mut response = Response::new(Body::from_stream(body));
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    /// The next item; `None` after the last.
    pub async fn next(&mut self) -> Option<Relayed> {
        if self.done {
            return None;
        }
        loop {
            let next = match self.first.take() {
                Some(first) => Some(Ok(first)),
                None => self.upstream.next().await,
            };
            match next {
                Some(Ok(chunk)) => {
                    if let Some(chunk) = self.take_in(chunk) {
                        return Some(Relayed::Chunk(chunk));
                    }
                }
                Some(Err(error)) => {
                    self.done = true;
                    // The body is written outside the request's span: log in it.
                    let span = self.span.clone();
                    let _in_request = span.enter();
                    if let Some(permit) = self.permit.take() {
                        permit.failed(&error);
                    }
                    tracing::warn!(model = %self.model.id, %error, "stream failed after the first chunk");
                    // What was generated is owed: the usage so far, then the error.
                    let usage = self.usage_chunk(Outcome::Interrupted);
                    return Some(Relayed::BrokeOff { usage, error });
                }
                None => {
                    self.done = true;
                    return Some(Relayed::Finished(self.usage_chunk(Outcome::Completed)));
                }
            }
        }
    }

    /// Notes a chunk's usage and text; the chunk, unless it carries no choices.
    fn take_in(&mut self, mut chunk: ChatCompletionChunk) -> Option<ChatCompletionChunk> {
        chunk.model.clone_from(&self.model.id);
        if let Some(usage) = chunk.usage.take() {
            self.usage = Some(usage);
        }
        for choice in &chunk.choices {
            if let Some(text) = &choice.delta.content {
                self.generated.push_str(text);
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reasons.push(reason.clone());
            }
        }
        if self.last.is_none() {
            // Only the envelope: the choices (the text) are not copied.
            self.last = Some(ChatCompletionChunk {
                id: chunk.id.clone(),
                object: chunk.object.clone(),
                created: chunk.created,
                model: chunk.model.clone(),
                choices: Vec::new(),
                usage: None,
                extra: chunk.extra.clone(),
            });
        }
        (!chunk.choices.is_empty()).then_some(chunk)
    }

    /// The usage chunk, with `usage.cost`. A provider that sent no usage (or
    /// broke off before it) is billed on our own o200k count of the prompt and
    /// of what it streamed. Settles a permit still open as a success.
    fn usage_chunk(&mut self, outcome: Outcome) -> ChatCompletionChunk {
        let mut usage = self.final_usage();
        if let Some(permit) = self.permit.take() {
            permit.succeeded_stream(self.ttft, usage.completion_tokens);
        }
        let cost = self.bill(&usage, outcome);
        usage
            .extra
            .insert("cost".into(), serde_json::Value::String(cost.to_string()));
        let mut chunk = self.last.take().unwrap_or_else(|| ChatCompletionChunk {
            id: String::new(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            extra: Default::default(),
        });
        chunk.model.clone_from(&self.model.id);
        chunk.choices.clear();
        chunk.usage = Some(usage);
        chunk
    }

    /// Records the usage (once) and returns its cost.
    fn bill(&mut self, usage: &Usage, outcome: Outcome) -> Money {
        let tokens = token_usage(usage);
        let cost = self.model.cost(&tokens);
        if let Some((recording, attempts)) = self.record.take() {
            recording.record(served(
                &self.model,
                tokens,
                cost,
                &attempts,
                Ending {
                    outcome,
                    first_byte: Some(self.ttft),
                    finish_reasons: std::mem::take(&mut self.finish_reasons),
                    output: recording.captures().then(|| self.generated.clone()),
                },
            ));
        }
        cost
    }

    /// The provider's usage, or, if it sent none (or broke off before it),
    /// our own o200k count of the prompt and of what it streamed.
    fn final_usage(&mut self) -> Usage {
        self.usage.take().unwrap_or_else(|| {
            let counter = &self.gateway.tokens;
            let completion = counter.count_text(&self.generated);
            let prompt = counter.count(&tokens::Prompt::of(&self.request));
            Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                ..Default::default()
            }
        })
    }
}

/// A client that leaves mid-stream, or before its first chunk, is billed
/// for what was generated.
impl Drop for Relay {
    fn drop(&mut self) {
        if self.record.is_some() {
            if let Some(first) = self.first.take() {
                self.take_in(first);
            }
            let usage = self.final_usage();
            self.bill(&usage, Outcome::ClientDisconnected);
        }
    }
}

/// One SSE event: optional `event:` name, then the JSON `data`, written
/// directly. JSON from serde_json never holds a raw line break, so the data
/// is always one `data:` line; axum's `sse::Event` scans every byte of it
/// for line breaks, which took 4.6% of the gateway's CPU on streams (perf,
/// 64 streams at saturation).
pub fn sse_event(name: Option<&str>, data: &impl serde::Serialize) -> Bytes {
    let mut out = Vec::with_capacity(256);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    let mark = out.len();
    if serde_json::to_writer(&mut out, data).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
