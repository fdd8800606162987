//! Provider adapters: one trait, one file per wire format.
//!
//! An adapter turns Model Router's OpenAI-shaped request into its provider's
//! wire format and the answer back into OpenAI shapes. The OpenAI-compatible
//! providers share one adapter ([`openai_compat`]) and differ only by their
//! [`Dialect`], each described in its own file; [`anthropic`] speaks the
//! Messages API, [`google`] the Gemini API and [`bedrock`] Bedrock's
//! Converse API. All share the HTTP layer in `upstream`.

pub mod anthropic;
pub mod bedrock;
mod cerebras;
pub mod google;
mod groq;
mod openai;
pub mod openai_compat;
pub mod stream;
#[cfg(test)]
mod testing;
mod translate;
mod upstream;
mod xai;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use async_trait::async_trait;
use catalog::{EmbeddingModel, Model, ProviderId, Wire};
use futures_util::Stream;

use crate::config::{GatewayConfig, ProviderSettings};
pub use openai_compat::{Dialect, OpenAiCompatible};

/// A stream of OpenAI-shaped chunks from a provider.
pub type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, ProviderError>> + Send>>;

/// A request field the target model cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The request field (`n`, `temperature`, `tools`, ...).
    pub param: &'static str,
    /// Why, for the client.
    pub reason: String,
}

/// How a call to a provider failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No connection could be made.
    #[error("connect error: {0}")]
    Connect(String),
    /// A timeout expired.
    #[error("{0} timeout")]
    Timeout(TimeoutKind),
    /// The provider answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider's answer was not in its documented format.
    #[error("malformed response: {0}")]
    Protocol(String),
    /// The stream broke off before it finished.
    #[error("stream interrupted: {0}")]
    Interrupted(String),
    /// The body ended cleanly but before the dialect's final event: the
    /// normal end for a dialect whose last event is not marked (Gemini), an
    /// interruption for the others.
    #[error("stream interrupted: the stream ended before its final event")]
    EndOfBody,
    /// The request carries something the model cannot take, which the
    /// adapter's own check should have refused before the call.
    #[error("malformed response: `{}`: {}", .0.param, .0.reason)]
    Unsupported(Unsupported),
}

/// Which of an upstream call's timeouts expired; a connect timeout blames
/// the connection, the others the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// No connection within the connect timeout.
    Connect,
    /// No response head within the first-byte timeout.
    FirstByte,
    /// No body bytes within the idle timeout.
    Idle,
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::FirstByte => "first byte",
            TimeoutKind::Idle => "idle",
        })
    }
}

impl From<Unsupported> for ProviderError {
    fn from(u: Unsupported) -> Self {
        ProviderError::Unsupported(u)
    }
}

impl ProviderError {
    /// Whether another candidate may succeed where this one failed.
    ///
    /// Connection trouble, timeouts, 429, 5xx (529 included), a provider-side
    /// key problem (401/403), a redirect (a wrong base URL; not followed) and
    /// a model the provider does not know (404, a stale catalog entry) are
    /// worth trying elsewhere; other 4xx are the request's own fault and
    /// would fail everywhere.
    pub fn retryable(&self) -> bool {
        match self {
            ProviderError::Status { status, .. } => {
                matches!(status, 300..=399 | 401 | 403 | 404 | 408 | 409 | 429 | 500..=599)
            }
            _ => true,
        }
    }

    /// The upstream HTTP status, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The provider's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One input of an embedding call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    /// A text.
    Text(String),
    /// Token ids of the model's own tokenizer (OpenAI models only).
    Tokens(Vec<u32>),
}

/// One embedding call, within the model's batch limits.
#[derive(Debug, Clone, Copy)]
pub struct EmbedCall<'a> {
    /// The inputs, in order.
    pub inputs: &'a [EmbedInput],
    /// The vector size to ask for natively; the model's default when `None`.
    pub dimensions: Option<u32>,
    /// The client's end-user id, for providers that take one.
    pub user: Option<&'a str>,
}

/// What an embedding call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens as the provider billed them, when it says.
    pub input_tokens: Option<u64>,
}

impl Embedded {
    /// Checks that `vectors` has one vector per input of `call`.
    pub fn expect(self, call: &EmbedCall<'_>) -> Result<Embedded, ProviderError> {
        if self.vectors.len() == call.inputs.len() {
            Ok(self)
        } else {
            Err(ProviderError::Protocol(format!(
                "{} vectors for {} inputs",
                self.vectors.len(),
                call.inputs.len()
            )))
        }
    }
}

/// One upstream API.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Refuses an embedding request this model cannot carry (`tokens`: the
    /// input is token ids). Providers without an embeddings API refuse all.
    fn check_embedding(&self, model: &EmbeddingModel, tokens: bool) -> Result<(), Unsupported> {
        let _ = tokens;
        Err(Unsupported {
            param: "model",
            reason: format!("provider {} has no embeddings API", model.provider),
        })
    }
    /// Vectors for one call's inputs.
    async fn embed(
        &self,
        model: &EmbeddingModel,
        call: &EmbedCall<'_>,
    ) -> Result<Embedded, ProviderError> {
        let _ = call;
        Err(ProviderError::Protocol(format!(
            "provider {} has no embeddings API",
            model.provider
        )))
    }
    /// Refuses a request this model cannot carry faithfully (before any network call).
    fn check(&self, model: &Model, request: &ChatRequest) -> Result<(), Unsupported>;
    /// A whole completion.
    async fn complete(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, ProviderError>;
    /// A stream of chunks; the last carries usage.
    async fn stream(
        &self,
        model: &Model,
        request: &ChatRequest,
    ) -> Result<ChunkStream, ProviderError>;
}

/// A provider's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `model: "auto"` model file does not load.
    #[error(transparent)]
    AutoModel(#[from] crate::auto::ModelError),
    /// The base URL does not parse.
    #[error("{provider} base URL `{url}`: {reason}")]
    BaseUrl {
        provider: ProviderId,
        url: String,
        reason: String,
    },
    /// AWS credentials need an access key id with the secret.
    #[error("{provider} needs an access key id (AWS_ACCESS_KEY_ID) with its secret")]
    AccessKeyId { provider: ProviderId },
    /// The API key cannot be sent in a header.
    #[error("{provider} API key contains characters not allowed in an HTTP header")]
    ApiKey { provider: ProviderId },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The configured providers. One without credentials is absent.
#[derive(Default, Clone)]
pub struct Registry {
    providers: HashMap<ProviderId, Arc<dyn Provider>>,
}

impl Registry {
    /// Builds adapters for every provider the configuration gives a key for.
    pub fn from_config(config: &GatewayConfig) -> Result<Registry, ConfigError> {
        let mut registry = Registry::default();
        for (&id, settings) in &config.providers {
            if settings.api_key.is_none() {
                continue;
            }
            let adapter: Arc<dyn Provider> = match id.spec().wire {
                Wire::OpenAiChat => {
                    Arc::new(OpenAiCompatible::new(openai_compat::dialect(id), settings)?)
                }
                Wire::AnthropicMessages => Arc::new(anthropic::Anthropic::new(settings)?),
                Wire::GeminiGenerateContent => Arc::new(google::Google::new(settings)?),
                Wire::BedrockConverse => Arc::new(bedrock::Bedrock::new(settings)?),
            };
            registry.providers.insert(id, adapter);
        }
        Ok(registry)
    }

    /// The adapter for `id`, if configured.
    pub fn get(&self, id: ProviderId) -> Option<&Arc<dyn Provider>> {
        self.providers.get(&id)
    }
}

/// Timeouts of one provider, as durations.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

impl From<&ProviderSettings> for Timeouts {
    fn from(s: &ProviderSettings) -> Self {
        Timeouts {
            connect: Duration::from_millis(s.connect_timeout_ms),
            first_byte: Duration::from_millis(s.first_byte_timeout_ms),
            idle: Duration::from_millis(s.idle_timeout_ms),
        }
    }
}
