//! The adapter for every OpenAI-compatible provider (OpenAI, xAI, Groq,
//! Cerebras): the request goes out nearly as it came in, with the catalog's
//! provider model id, forced stream usage, and the dialect's deviations.

use std::time::Duration;

use async_trait::async_trait;
use catalog::{Model, ProviderId};
use futures_util::StreamExt;
use openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, Extra, Message, Stop, StreamOptions, Tool,
};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;
use serde_json::Value;

use super::{ChunkStream, ConfigError, Provider, ProviderError, Timeouts, Unsupported};
use crate::config::ProviderSettings;
use crate::sse::SseDecoder;

/// How one OpenAI-compatible provider differs from OpenAI itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The provider.
    pub provider: ProviderId,
    /// The public API base URL.
    pub default_base_url: &'static str,
    /// Reasoning models take `max_completion_tokens` and refuse `max_tokens`.
    pub reasoning_uses_max_completion_tokens: bool,
    /// Request fields this provider's reasoning models refuse.
    pub reasoning_refuses: &'static [&'static str],
    /// Only `n = 1` is supported.
    pub single_choice: bool,
}

/// The dialect of `provider`, if it speaks OpenAI's format.
pub fn dialect(provider: ProviderId) -> Option<Dialect> {
    match provider {
        ProviderId::Openai => Some(super::openai::DIALECT),
        ProviderId::Xai => Some(super::xai::DIALECT),
        ProviderId::Groq => Some(super::groq::DIALECT),
        ProviderId::Cerebras => Some(super::cerebras::DIALECT),
        _ => None,
    }
}

/// An OpenAI-compatible provider endpoint with its own connection pool.
pub struct OpenAiCompatible {
    dialect: Dialect,
    url: reqwest::Url,
    authorization: reqwest::header::HeaderValue,
    client: reqwest::Client,
    timeouts: Timeouts,
}

impl OpenAiCompatible {
    /// An adapter for `dialect` using `settings` (base URL, key, timeouts, pool).
    pub fn new(dialect: Dialect, settings: &ProviderSettings) -> Result<Self, ConfigError> {
        let timeouts = Timeouts::from(settings);
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        let base = settings
            .base_url
            .as_deref()
            .unwrap_or(dialect.default_base_url)
            .trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        let url = reqwest::Url::parse(&url).map_err(|e| ConfigError::BaseUrl {
            provider: dialect.provider,
            url,
            reason: e.to_string(),
        })?;
        let key = settings.api_key.as_deref().unwrap_or_default();
        let mut authorization = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| ConfigError::ApiKey {
                provider: dialect.provider,
            })?;
        authorization.set_sensitive(true);
        Ok(OpenAiCompatible {
            dialect,
            url,
            authorization,
            client,
            timeouts,
        })
    }

    async fn send(&self, body: &UpstreamRequest<'_>) -> Result<reqwest::Response, ProviderError> {
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .json(body);
        let response = tokio::time::timeout(self.timeouts.first_byte, request.send())
            .await
            .map_err(|_| ProviderError::Timeout("first byte"))?
            .map_err(|e| classify(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let text = tokio::time::timeout(self.timeouts.idle, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(ProviderError::Status {
            status,
            message: error_message(&text),
            retry_after,
        })
    }
}

fn classify(error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout("connect")
    } else {
        ProviderError::Connect(error.to_string())
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The provider's own error message, or the raw body if it is not the OpenAI envelope.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(500).collect())
}

#[async_trait]
impl Provider for OpenAiCompatible {
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
        let bytes = tokio::time::timeout(self.timeouts.idle, response.bytes())
            .await
            .map_err(|_| ProviderError::Timeout("idle"))?
            .map_err(|e| ProviderError::Interrupted(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Protocol(e.to_string()))
    }

    async fn stream(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let response = self
            .send(&UpstreamRequest::new(self.dialect, model, request, true))
            .await?;
        let idle = self.timeouts.idle;
        let bytes = response.bytes_stream();
        let events = futures_util::stream::unfold(
            (bytes, SseDecoder::default(), false),
            move |(mut bytes, mut decoder, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(data) = decoder.next_data() {
                        if data == "[DONE]" {
                            return None;
                        }
                        let item = parse_chunk(&data);
                        let stop = item.is_err();
                        return Some((item, (bytes, decoder, stop)));
                    }
                    match tokio::time::timeout(idle, bytes.next()).await {
                        Err(_) => {
                            return Some((
                                Err(ProviderError::Timeout("idle")),
                                (bytes, decoder, true),
                            ))
                        }
                        Ok(Some(Ok(chunk))) => decoder.push(&chunk),
                        Ok(Some(Err(e))) => {
                            return Some((
                                Err(ProviderError::Interrupted(e.to_string())),
                                (bytes, decoder, true),
                            ))
                        }
                        Ok(None) => {
                            let error = ProviderError::Interrupted(
                                "the stream ended without [DONE]".into(),
                            );
                            return Some((Err(error), (bytes, decoder, true)));
                        }
                    }
                }
            },
        );
        Ok(events.boxed())
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
    messages: &'a [Message],
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
    tools: Option<&'a [Tool]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a Value>,
    #[serde(flatten)]
    extra: &'a Extra,
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
            messages: &r.messages,
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
            tools: r.tools.as_deref(),
            tool_choice: r.tool_choice.as_ref(),
            response_format: r.response_format.as_ref(),
            extra: &r.extra,
        }
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
