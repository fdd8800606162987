//! The Anthropic Messages API adapter (`POST /v1/messages`, `x-api-key`,
//! `anthropic-version: 2023-06-01`). [`request`] translates the OpenAI
//! request, [`response`] translates answers and stream events back.

pub mod request;
pub mod response;

use async_trait::async_trait;
use catalog::{Model, ProviderId};
use openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use reqwest::header::HeaderMap;

use super::stream::{drive, StreamTranslation};
use super::upstream::{self, Upstream};
use super::{ChunkStream, ConfigError, Provider, ProviderError, Unsupported};
use crate::config::ProviderSettings;
use crate::sse::Event;
use response::{Asked, StreamTranslator};

/// An Anthropic endpoint with its own connection pool.
pub struct Anthropic {
    url: reqwest::Url,
    headers: HeaderMap,
    upstream: Upstream,
}

impl Anthropic {
    /// An adapter using `settings` (base URL without `/v1`, key, timeouts, pool).
    pub fn new(settings: &ProviderSettings) -> Result<Anthropic, ConfigError> {
        let provider = ProviderId::Anthropic;
        let url = upstream::endpoint(
            provider,
            settings.base_url.as_deref(),
            ProviderId::Anthropic.spec().default_base_url,
            "/v1/messages",
        )?;
        let key = settings.api_key.as_deref().unwrap_or_default();
        let mut headers = HeaderMap::new();
        for (name, value, sensitive) in [
            ("x-api-key", key, true),
            ("anthropic-version", anthropic::API_VERSION, false),
        ] {
            let (name, value) = upstream::header(provider, name, value, sensitive)?;
            headers.insert(name, value);
        }
        Ok(Anthropic {
            url,
            headers,
            upstream: Upstream::new(settings)?,
        })
    }

    async fn send(
        &self,
        model: &Model,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = request::translate(model, request, stream)?;
        self.upstream
            .post(&self.url, self.headers.clone(), &body)
            .await
    }
}

fn asked(request: &ChatRequest) -> Asked {
    Asked {
        json_tool: request::json_mode(request).map(|(name, _)| name),
        thinking: request.extra.get("thinking").is_some_and(|t| !t.is_null()),
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn check(&self, _model: &Model, request: &ChatRequest) -> Result<(), Unsupported> {
        request::check(request)
    }

    async fn complete(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let response = self.send(model, request, false).await?;
        let message = self.upstream.json(response).await?;
        Ok(response::completion(message, &asked(request)))
    }

    async fn stream(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let response = self.send(model, request, true).await?;
        let translator = StreamTranslator::new(asked(request));
        Ok(drive(
            self.upstream.sse(response),
            AnthropicStream(translator),
        ))
    }
}

/// Anthropic's stream: each event's data is a typed event, until `message_stop`.
struct AnthropicStream(StreamTranslator);

impl StreamTranslation for AnthropicStream {
    type Frame = Event;

    fn on(&mut self, event: Event) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        let event = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::Protocol(format!("bad Anthropic stream event: {e}")))?;
        self.0.on(event)
    }

    fn done(&self) -> bool {
        self.0.finished()
    }
}
