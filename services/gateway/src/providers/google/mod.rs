//! The Gemini API adapter (`models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, key in `x-goog-api-key`). [`request`]
//! translates the OpenAI request, [`response`] translates answers back;
//! [`embed`] serves embeddings through `:batchEmbedContents`.

pub mod embed;
pub mod request;
pub mod response;

use async_trait::async_trait;
use catalog::{EmbeddingModel, Model, ProviderId};
use gemini::GenerateContentResponse;
use openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use reqwest::header::HeaderMap;

use super::stream::{drive, StreamTranslation};
use super::upstream::{self, Upstream};
use super::{ChunkStream, ConfigError, EmbedCall, Embedded, Provider, ProviderError, Unsupported};
use crate::config::ProviderSettings;
use crate::sse::Event;
use response::StreamTranslator;

/// A Gemini endpoint with its own connection pool.
pub struct Google {
    /// `{base}/v1beta/models/`, to which `{model}:{method}` is appended.
    models: reqwest::Url,
    headers: HeaderMap,
    upstream: Upstream,
}

impl Google {
    /// An adapter using `settings` (base URL without the version, key, timeouts, pool).
    pub fn new(settings: &ProviderSettings) -> Result<Google, ConfigError> {
        let provider = ProviderId::Google;
        let models = upstream::endpoint(
            provider,
            settings.base_url.as_deref(),
            ProviderId::Google.spec().default_base_url,
            "/v1beta/models/",
        )?;
        let key = settings.api_key.as_deref().unwrap_or_default();
        let (name, value) = upstream::header(provider, "x-goog-api-key", key, true)?;
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        Ok(Google {
            models,
            headers,
            upstream: Upstream::new(settings)?,
        })
    }

    async fn send(
        &self,
        model: &Model,
        request: &ChatRequest,
        method: &str,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = request::translate(model, request)?;
        self.post(&model.provider_model_id, method, &body).await
    }

    /// POSTs `body` to `models/{model_id}:{method}`.
    async fn post(
        &self,
        model_id: &str,
        method: &str,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, ProviderError> {
        let url = self
            .models
            // `./`: a model id before a colon would otherwise parse as a URL scheme.
            .join(&format!("./{model_id}:{method}"))
            .map_err(|e| ProviderError::Protocol(format!("model URL: {e}")))?;
        self.upstream.post(&url, self.headers.clone(), body).await
    }
}

fn parse(data: &str) -> Result<GenerateContentResponse, ProviderError> {
    serde_json::from_str(data)
        .map_err(|e| ProviderError::Protocol(format!("bad Gemini stream chunk: {e}")))
}

#[async_trait]
impl Provider for Google {
    fn check_embedding(&self, model: &EmbeddingModel, tokens: bool) -> Result<(), Unsupported> {
        super::translate::check_text_only(model, tokens)
    }

    async fn embed(
        &self,
        model: &EmbeddingModel,
        call: &EmbedCall<'_>,
    ) -> Result<Embedded, ProviderError> {
        let body = embed::request(model, call)?;
        let response = self
            .post(&model.provider_model_id, "batchEmbedContents", &body)
            .await?;
        embed::vectors(self.upstream.json(response).await?, call)
    }

    fn check(&self, _model: &Model, request: &ChatRequest) -> Result<(), Unsupported> {
        request::check(request)
    }

    async fn complete(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let response = self.send(model, request, "generateContent").await?;
        let answer = self.upstream.json(response).await?;
        Ok(response::completion(answer, &model.provider_model_id))
    }

    async fn stream(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let response = self
            .send(model, request, "streamGenerateContent?alt=sse")
            .await?;
        let translator = StreamTranslator::new(&model.provider_model_id);
        Ok(drive(self.upstream.sse(response), GeminiStream(translator)))
    }
}

/// Gemini's stream: each event's data is a response; the body ends after a
/// finished candidate with no end mark, and the usage chunk closes it.
struct GeminiStream(StreamTranslator);

impl StreamTranslation for GeminiStream {
    type Frame = Event;

    fn on(&mut self, event: Event) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        Ok(self.0.on(parse(&event.data)?))
    }

    fn done(&self) -> bool {
        false
    }

    fn at_end(&mut self) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        if self.0.finished() {
            Ok(Some(self.0.usage_chunk()))
        } else {
            Err(ProviderError::EndOfBody)
        }
    }
}
