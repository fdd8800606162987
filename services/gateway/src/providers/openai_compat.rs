//! The adapter for every OpenAI-compatible provider (OpenAI, xAI, Groq,
//! Cerebras): the request goes out nearly as it came in, with the catalog's
//! provider model id, forced stream usage, and the dialect's deviations.

use std::borrow::Cow;

use async_trait::async_trait;
use catalog::{EmbeddingModel, Model, ProviderId};
use openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, Content, ContentPart, EmbeddingInput,
    EmbeddingRequest, EmbeddingResponse, EmbeddingVector, EncodingFormat, Extra, Message, Stop,
    StreamOptions, Tool,
};
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use super::stream::{drive, StreamTranslation};
use super::upstream::{self, Upstream};
use super::{
    ChunkStream, ConfigError, EmbedCall, EmbedInput, Embedded, Provider, ProviderError, Unsupported,
};
use crate::config::ProviderSettings;
use crate::sse::Event;

/// How one OpenAI-compatible provider differs from OpenAI itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The provider.
    pub provider: ProviderId,
    /// Reasoning models take `max_completion_tokens` and refuse `max_tokens`.
    pub reasoning_uses_max_completion_tokens: bool,
    /// Request fields this provider's reasoning models refuse.
    pub reasoning_refuses: &'static [&'static str],
    /// Only `n = 1` is supported.
    pub single_choice: bool,
}

/// The dialect of `provider`, one whose wire is OpenAI's
/// ([`catalog::Wire::OpenAiChat`]); OpenAI's own for any other.
pub fn dialect(provider: ProviderId) -> Dialect {
    match provider {
        ProviderId::Xai => super::xai::DIALECT,
        ProviderId::Groq => super::groq::DIALECT,
        ProviderId::Cerebras => super::cerebras::DIALECT,
        _ => super::openai::DIALECT,
    }
}

/// An OpenAI-compatible provider endpoint with its own connection pool.
pub struct OpenAiCompatible {
    dialect: Dialect,
    url: reqwest::Url,
    embeddings_url: reqwest::Url,
    headers: HeaderMap,
    upstream: Upstream,
}

impl OpenAiCompatible {
    /// An adapter for `dialect` using `settings` (base URL, key, timeouts, pool).
    pub fn new(dialect: Dialect, settings: &ProviderSettings) -> Result<Self, ConfigError> {
        let provider = dialect.provider;
        let url = upstream::endpoint(
            provider,
            settings.base_url.as_deref(),
            dialect.provider.spec().default_base_url,
            "/chat/completions",
        )?;
        let embeddings_url = upstream::endpoint(
            provider,
            settings.base_url.as_deref(),
            dialect.provider.spec().default_base_url,
            "/embeddings",
        )?;
        let key = settings.api_key.as_deref().unwrap_or_default();
        let (name, value) =
            upstream::header(provider, "authorization", &format!("Bearer {key}"), true)?;
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        Ok(OpenAiCompatible {
            dialect,
            url,
            embeddings_url,
            headers,
            upstream: Upstream::new(settings)?,
        })
    }

    async fn send(&self, body: &UpstreamRequest<'_>) -> Result<reqwest::Response, ProviderError> {
        self.upstream
            .post(&self.url, self.headers.clone(), body)
            .await
    }
}

#[async_trait]
impl Provider for OpenAiCompatible {
    fn check_embedding(&self, _model: &EmbeddingModel, _tokens: bool) -> Result<(), Unsupported> {
        Ok(())
    }

    /// `POST /embeddings`, vectors asked for in base64: a quarter of the
    /// bytes of JSON numbers and no float parsing.
    async fn embed(
        &self,
        model: &EmbeddingModel,
        call: &EmbedCall<'_>,
    ) -> Result<Embedded, ProviderError> {
        let texts = || {
            call.inputs.iter().map(|i| match i {
                EmbedInput::Text(t) => Some(t.clone()),
                EmbedInput::Tokens(_) => None,
            })
        };
        let input = match texts().collect::<Option<Vec<String>>>() {
            Some(texts) => EmbeddingInput::Texts(texts),
            None => EmbeddingInput::TokenLists(
                call.inputs
                    .iter()
                    .map(|i| match i {
                        EmbedInput::Tokens(ids) => ids.clone(),
                        EmbedInput::Text(_) => Vec::new(),
                    })
                    .collect(),
            ),
        };
        let body = EmbeddingRequest {
            model: model.provider_model_id.clone(),
            input,
            encoding_format: Some(EncodingFormat::Base64),
            dimensions: call.dimensions,
            user: call.user.map(str::to_owned),
            prefer: None,
            extra: Default::default(),
        };
        let response = self
            .upstream
            .post(&self.embeddings_url, self.headers.clone(), &body)
            .await?;
        let mut answer: EmbeddingResponse = self.upstream.json(response).await?;
        answer.data.sort_by_key(|e| e.index);
        let vectors = answer
            .data
            .into_iter()
            .map(|e| match e.embedding {
                EmbeddingVector::Float(values) => Ok(values),
                EmbeddingVector::Base64(text) => {
                    crate::embeddings::vector::from_base64(&text).map_err(ProviderError::Protocol)
                }
            })
            .collect::<Result<_, _>>()?;
        Embedded {
            vectors,
            input_tokens: Some(answer.usage.prompt_tokens),
        }
        .expect(call)
    }

    fn check(&self, model: &Model, request: &ChatRequest) -> Result<(), Unsupported> {
        if self.dialect.single_choice && request.n.unwrap_or(1) != 1 {
            return Err(Unsupported {
                param: "n",
                reason: format!("{} returns one choice only", self.dialect.provider),
            });
        }
        if model.reasoning {
            for &field in self.dialect.reasoning_refuses {
                if carries(request, field) {
                    return Err(Unsupported {
                        param: field,
                        reason: format!(
                            "{} is a reasoning model and does not accept `{field}`",
                            model.id
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    async fn complete(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let response = self
            .send(&UpstreamRequest::new(self.dialect, model, request, false))
            .await?;
        self.upstream.json(response).await
    }

    async fn stream(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let response = self
            .send(&UpstreamRequest::new(self.dialect, model, request, true))
            .await?;
        Ok(drive(self.upstream.sse(response), OpenAiStream::default()))
    }
}

/// OpenAI's stream: each event's data is a chunk, until `[DONE]`.
#[derive(Default)]
struct OpenAiStream {
    done: bool,
}

impl StreamTranslation for OpenAiStream {
    type Frame = Event;

    fn on(&mut self, event: Event) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        if event.data == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        parse_chunk(&event.data).map(Some)
    }

    fn done(&self) -> bool {
        self.done
    }
}

fn parse_chunk(data: &str) -> Result<ChatCompletionChunk, ProviderError> {
    serde_json::from_str(data).map_err(|parse_error| {
        match serde_json::from_str::<Value>(data)
            .ok()
            .and_then(|v| v.get("error").cloned())
        {
            Some(error) => ProviderError::Interrupted(
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("provider error")
                    .to_owned(),
            ),
            None => ProviderError::Protocol(format!("bad stream chunk: {parse_error}")),
        }
    })
}

/// Whether `request` sets `field` to something other than its default.
fn carries(request: &ChatRequest, field: &str) -> bool {
    match field {
        "temperature" => request.temperature.is_some_and(|t| t != 1.0),
        "top_p" => request.top_p.is_some_and(|t| t != 1.0),
        "stop" => request.stop.is_some(),
        other => request.extra.get(other).is_some_and(|v| !v.is_null()),
    }
}

/// The request as sent upstream: borrowed from the client's, with the
/// provider's model id, no `prefer`, and usage forced on for streams.
#[derive(Serialize)]
struct UpstreamRequest<'a> {
    model: &'a str,
    messages: Cow<'a, [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a Stop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Cow<'a, [Tool]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a Value>,
    #[serde(flatten)]
    extra: Passed<'a>,
}

/// Chat extras OpenAI-compatible APIs do not take: Anthropic's own fields,
/// which the Messages ingress carries for Anthropic and Gemini upstreams.
const NOT_OPENAI: [&str; 2] = ["thinking", "top_k"];

/// The client's other fields, passed through except [`NOT_OPENAI`].
struct Passed<'a>(&'a Extra);

impl Serialize for Passed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.0 {
            if !NOT_OPENAI.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

impl<'a> UpstreamRequest<'a> {
    fn new(dialect: Dialect, model: &'a Model, r: &'a ChatRequest, stream: bool) -> Self {
        let (mut max_tokens, mut max_completion_tokens) = (r.max_tokens, r.max_completion_tokens);
        if model.reasoning && dialect.reasoning_uses_max_completion_tokens {
            max_completion_tokens = max_completion_tokens.or(max_tokens.take());
        }
        let stream_options = stream.then(|| {
            let mut options = r.stream_options.clone().unwrap_or_default();
            options.include_usage = Some(true);
            options
        });
        UpstreamRequest {
            model: &model.provider_model_id,
            messages: uncached(&r.messages, message_marked, |m| {
                if let Some(Content::Parts(parts)) = &mut m.content {
                    parts.iter_mut().for_each(unmark);
                }
            }),
            stream: stream.then_some(true),
            stream_options,
            max_tokens,
            max_completion_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            n: r.n,
            stop: r.stop.as_ref(),
            seed: r.seed,
            user: r.user.as_deref(),
            tools: r.tools.as_deref().map(|tools| {
                uncached(
                    tools,
                    |t| t.cache_control.is_some(),
                    |t| t.cache_control = None,
                )
            }),
            tool_choice: r.tool_choice.as_ref(),
            response_format: r.response_format.as_ref(),
            extra: Passed(&r.extra),
        }
    }
}

/// `items` without Anthropic's prompt-cache marks, which OpenAI-compatible
/// APIs do not know: borrowed as they are when none is `marked`, else
/// copied once with `strip` applied to each.
fn uncached<T: Clone>(
    items: &[T],
    marked: impl Fn(&T) -> bool,
    strip: impl Fn(&mut T),
) -> Cow<'_, [T]> {
    if !items.iter().any(marked) {
        return Cow::Borrowed(items);
    }
    let mut owned = items.to_vec();
    owned.iter_mut().for_each(strip);
    Cow::Owned(owned)
}

fn message_marked(message: &Message) -> bool {
    match &message.content {
        Some(Content::Parts(parts)) => parts.iter().any(|p| {
            matches!(
                p,
                ContentPart::Text {
                    cache_control: Some(_),
                    ..
                }
            )
        }),
        _ => false,
    }
}

fn unmark(part: &mut ContentPart) {
    if let ContentPart::Text { cache_control, .. } = part {
        *cache_control = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalog::Catalog;

    fn request(json: serde_json::Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn anthropic_only_marks_and_fields_never_reach_an_openai_compatible_api() {
        let catalog = Catalog::builtin();
        let req = request(serde_json::json!({
            "model": "gpt-4.1", "top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}, "logit_bias": {"1": 1},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]
        }));
        let gpt = catalog.model("gpt-4.1").unwrap();
        let out = serde_json::to_value(UpstreamRequest::new(
            super::super::openai::DIALECT,
            gpt,
            &req,
            false,
        ))
        .unwrap();
        assert!(
            out.get("top_k").is_none() && out.get("thinking").is_none(),
            "{out}"
        );
        assert_eq!(out["logit_bias"]["1"], 1, "other fields pass");
        assert_eq!(
            out["messages"][0]["content"][0],
            serde_json::json!({"type": "text", "text": "hi"})
        );
        assert!(out["tools"][0].get("cache_control").is_none(), "{out}");
        // The client's request is untouched: the marks still reach Anthropic.
        assert!(
            serde_json::to_value(&req).unwrap()["messages"][0]["content"][0]["cache_control"]
                .is_object()
        );
    }

    #[test]
    fn upstream_request_keeps_every_field_and_rewrites_only_what_the_dialect_needs() {
        let catalog = Catalog::builtin();
        let req = request(serde_json::json!({
            "model": "economy", "prefer": "cheap",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
            "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "n": 2, "stop": ["\n"], "seed": 7, "user": "u1",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto", "response_format": {"type": "json_object"}, "logit_bias": {"50256": -100}
        }));
        let gpt = catalog.model("gpt-4.1-mini").unwrap();
        let out = serde_json::to_value(UpstreamRequest::new(
            super::super::openai::DIALECT,
            gpt,
            &req,
            true,
        ))
        .unwrap();
        let mut expected = serde_json::to_value(&req).unwrap();
        let object = expected.as_object_mut().unwrap();
        object.remove("prefer");
        object.insert("model".into(), "gpt-4.1-mini".into());
        object.insert("stream".into(), true.into());
        object.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
        assert_eq!(out, expected);

        let o4 = catalog.model("o4-mini").unwrap();
        let out = serde_json::to_value(UpstreamRequest::new(
            super::super::openai::DIALECT,
            o4,
            &req,
            false,
        ))
        .unwrap();
        assert_eq!(out["max_completion_tokens"], 50);
        assert!(out.get("max_tokens").is_none());
    }

    #[test]
    fn dialect_checks_name_the_field() {
        let catalog = Catalog::builtin();
        let settings = ProviderSettings {
            api_key: Some("k".into()),
            ..Default::default()
        };
        let groq = OpenAiCompatible::new(super::super::groq::DIALECT, &settings).unwrap();
        let openai = OpenAiCompatible::new(super::super::openai::DIALECT, &settings).unwrap();
        let req =
            request(serde_json::json!({"model": "x", "messages": [], "n": 2, "temperature": 0.3}));
        let llama = catalog.model("llama-3.3-70b-versatile").unwrap();
        assert_eq!(groq.check(llama, &req).unwrap_err().param, "n");
        assert_eq!(
            openai
                .check(catalog.model("o3").unwrap(), &req)
                .unwrap_err()
                .param,
            "temperature"
        );
        assert!(openai
            .check(catalog.model("gpt-4.1").unwrap(), &req)
            .is_ok());
    }
}
