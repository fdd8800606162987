//! The AWS Bedrock Runtime adapter: Converse and ConverseStream
//! (`/model/{modelId}/converse[-stream]`), every request signed with SigV4
//! (service `bedrock`, the configured region) from the standard AWS
//! credentials. [`request`] translates the OpenAI request, [`response`]
//! translates answers and event-stream frames back. Model ids come from the
//! catalog, cross-region inference profiles (`us.` prefixes) included.
//! [`embed`] serves Titan Text Embeddings V2 through InvokeModel.

pub mod embed;
pub mod request;
pub mod response;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bedrock::eventstream::{Decoder, Frame};
use bedrock::sigv4::{self, Credentials};
use catalog::{EmbeddingModel, Model, ProviderId};
use futures_util::stream::{self, Stream, StreamExt};
use openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::stream::{drive, StreamTranslation};
use super::upstream::{self, Upstream};
use super::{ChunkStream, ConfigError, EmbedCall, Embedded, Provider, ProviderError, Unsupported};
use crate::config::ProviderSettings;
use response::StreamTranslator;

/// The region used when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A Bedrock Runtime endpoint with its own connection pool and credentials.
pub struct Bedrock {
    /// `{base}/model/`, to which `{model id}/converse` is appended.
    models: reqwest::Url,
    credentials: Credentials,
    region: String,
    upstream: Upstream,
    /// Numbers completions (Converse names none).
    next_id: AtomicU64,
}

impl Bedrock {
    /// An adapter using `settings`: `access_key_id`, `api_key` (the secret
    /// access key), `session_token`, `region`, base URL, timeouts, pool.
    pub fn new(settings: &ProviderSettings) -> Result<Bedrock, ConfigError> {
        let provider = ProviderId::Bedrock;
        let region = settings
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let default = provider
            .spec()
            .default_base_url
            .replace("{region}", &region);
        let models =
            upstream::endpoint(provider, settings.base_url.as_deref(), &default, "/model/")?;
        let credentials = Credentials {
            access_key_id: settings
                .access_key_id
                .clone()
                .ok_or(ConfigError::AccessKeyId { provider })?,
            secret_access_key: settings.api_key.clone().unwrap_or_default(),
            session_token: settings.session_token.clone(),
        };
        Ok(Bedrock {
            models,
            credentials,
            region,
            upstream: Upstream::new(settings)?,
            next_id: AtomicU64::new(0),
        })
    }

    fn completion_id(&self) -> String {
        format!(
            "bedrock-{:x}-{}",
            std::process::id(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
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

    /// POSTs `body` to `model/{model_id}/{method}`, SigV4-signed.
    async fn post(
        &self,
        model_id: &str,
        method: &str,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, ProviderError> {
        let protocol = |e: String| ProviderError::Protocol(e);
        let body = serde_json::to_vec(body).map_err(|e| protocol(e.to_string()))?;
        // As the AWS SDKs do: a model id's `:` travels percent-encoded.
        let id = model_id.replace(':', "%3A");
        let url = self
            .models
            .join(&format!("{id}/{method}"))
            .map_err(|e| protocol(format!("model URL: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(protocol("model URL has no host".into())),
        };
        let to_sign = [
            ("content-type", "application/json"),
            ("host", host.as_str()),
        ];
        let signed = sigv4::sign(
            "POST",
            url.as_str(),
            &to_sign,
            &body,
            &self.credentials,
            &self.region,
            SystemTime::now(),
        )
        .map_err(|e| protocol(format!("SigV4 signing: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in signed {
            let name = HeaderName::try_from(name).map_err(|e| protocol(e.to_string()))?;
            let value = HeaderValue::try_from(value).map_err(|e| protocol(e.to_string()))?;
            headers.insert(name, value);
        }
        self.upstream.post_bytes(&url, headers, body).await
    }
}

#[async_trait]
impl Provider for Bedrock {
    fn check_embedding(&self, model: &EmbeddingModel, tokens: bool) -> Result<(), Unsupported> {
        super::translate::check_text_only(model, tokens)
    }

    /// Titan takes one text per InvokeModel call: the gateway's batching
    /// sends one input per call, and this loop only serves a catalog that
    /// allows more.
    async fn embed(
        &self,
        model: &EmbeddingModel,
        call: &EmbedCall<'_>,
    ) -> Result<Embedded, ProviderError> {
        let mut vectors = Vec::with_capacity(call.inputs.len());
        let mut tokens = 0;
        for input in call.inputs {
            let body = embed::request(model, input, call.dimensions)?;
            let response = self.post(&model.provider_model_id, "invoke", &body).await?;
            let answer: bedrock::TitanEmbedResponse = self.upstream.json(response).await?;
            tokens += answer.input_text_token_count;
            vectors.push(answer.embedding);
        }
        Embedded {
            vectors,
            input_tokens: Some(tokens),
        }
        .expect(call)
    }

    fn check(&self, _model: &Model, request: &ChatRequest) -> Result<(), Unsupported> {
        request::check(request)
    }

    async fn complete(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let response = self.send(model, request, "converse").await?;
        let answer = self.upstream.json(response).await?;
        Ok(response::completion(
            answer,
            &model.provider_model_id,
            self.completion_id(),
        ))
    }

    async fn stream(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let response = self.send(model, request, "converse-stream").await?;
        let translator = StreamTranslator::new(&model.provider_model_id, self.completion_id());
        Ok(drive(
            frames(self.upstream.body(response)),
            ConverseStream(translator),
        ))
    }
}

/// The event-stream frames of a Converse body, ending as the body does; a
/// corrupt frame is a protocol error.
fn frames(
    body: impl Stream<Item = Result<bytes::Bytes, ProviderError>> + Send + 'static,
) -> impl Stream<Item = Result<Frame, ProviderError>> + Send + 'static {
    let state = (body.boxed(), Decoder::default(), false);
    stream::unfold(state, |(mut body, mut decoder, stopped)| async move {
        if stopped {
            return None;
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => return Some((Ok(frame), (body, decoder, false))),
                Err(e) => return Some((Err(ProviderError::Protocol(e)), (body, decoder, true))),
                Ok(None) => match body.next().await? {
                    Ok(bytes) => decoder.push(&bytes),
                    Err(e) => return Some((Err(e), (body, decoder, true))),
                },
            }
        }
    })
}

/// Converse's stream: event-stream frames, until `metadata`.
struct ConverseStream(StreamTranslator);

impl StreamTranslation for ConverseStream {
    type Frame = Frame;

    fn on(&mut self, frame: Frame) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        self.0.on(frame)
    }

    fn done(&self) -> bool {
        self.0.finished()
    }
}
