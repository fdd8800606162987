//! Every way a request can fail, mapped to HTTP once, in the OpenAI envelope.

use std::fmt;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use catalog::{ProviderId, Tier};
use openai::ErrorBody;
use serde::Serialize;

use crate::health::{Monitored, Skip};
use crate::providers::ProviderError;

/// One try at one model, as reported when every candidate failed.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The provider tried.
    pub provider: String,
    /// The catalog model tried.
    pub model: String,
    /// The upstream HTTP status, if it answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub error: String,
    /// How long the attempt took.
    pub latency_ms: u64,
    /// Not tried: the model's breaker was open or it was cooling down.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

impl Attempt {
    /// An attempt that failed with `error` after `took`.
    pub fn failed(
        model: &(impl Monitored + ?Sized),
        error: &ProviderError,
        took: Duration,
    ) -> Attempt {
        Attempt {
            provider: model.provider().to_string(),
            model: model.id().to_owned(),
            status: error.status(),
            error: error.to_string(),
            latency_ms: took.as_millis() as u64,
            skipped: false,
        }
    }

    /// A candidate passed over because its health said it would fail.
    pub fn skipped(model: &(impl Monitored + ?Sized), skip: Skip) -> Attempt {
        Attempt {
            provider: model.provider().to_string(),
            model: model.id().to_owned(),
            status: None,
            error: format!(
                "skipped: {}; next try in {} ms",
                skip.reason,
                skip.retry_in.as_millis()
            ),
            latency_ms: 0,
            skipped: true,
        }
    }
}

/// The soonest moment any candidate passed over or rate limited accepts
/// requests again: the `Retry-After` of an all-candidates-failed answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Soonest(Option<Duration>);

impl Soonest {
    /// Notes that one candidate accepts requests again after `wait`.
    pub fn note(&mut self, wait: Duration) {
        self.0 = Some(self.0.map_or(wait, |w| w.min(wait)));
    }

    /// Whole seconds, at least 1, if anything was noted.
    pub fn seconds(self) -> Option<u64> {
        self.0.map(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }
}

/// Why the gateway refused or could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// The prompt and the completion do not fit the context window.
    #[error("{0}")]
    ContextLengthExceeded(TooLong),
    /// No `Authorization` or `x-api-key` header.
    #[error("You didn't provide an API key. Send it as `Authorization: Bearer mr_sk_...`.")]
    MissingKey,
    /// A key the key ring does not hold (shown redacted).
    #[error("Incorrect API key provided: {redacted}.")]
    IncorrectKey { redacted: String },
    #[error("The model `{}` does not exist. Use a tier (economy, standard, premium) or a model id from GET /v1/models.", echo(.0))]
    ModelNotFound(String),
    #[error("The embedding model `{}` does not exist. Use embed-small, embed-large, embed-titan or an embedding model id from GET /v1/models.", echo(.0))]
    EmbeddingModelNotFound(String),
    #[error("Request body is larger than the {0}-byte limit.")]
    PayloadTooLarge(usize),
    /// The body did not arrive within the server's body read timeout.
    #[error("The request body did not arrive in time.")]
    RequestTimeout,
    /// The memory for request bodies in flight is spent.
    #[error("The gateway is busy reading other requests; retry in a second.")]
    Busy,
    #[error("Unknown request URL: {}.", echo(.0))]
    UnknownRoute(String),
    /// No configured provider serves what the request names.
    #[error("{0}")]
    NoProvider(Unconfigured),
    /// The provider refused the request itself (a 4xx that another provider would refuse too).
    #[error("{provider} rejected the request: {message}")]
    UpstreamRejected {
        status: u16,
        provider: String,
        message: String,
        /// Every attempt, the refused one last (recorded, not shown).
        attempts: Vec<Attempt>,
    },
    /// The account has no credit and no free model can serve the request.
    #[error("{0}")]
    InsufficientCredits(Unpaid),
    /// Every candidate's provider is blocked by the account.
    #[error("Every candidate for this request is from a provider your account blocked ({}). Unblock one on the dashboard's Providers page, or choose another model.", names(.providers))]
    ProviderBlocked { providers: Vec<ProviderId> },
    /// The account reached its daily spend limit.
    #[error("The daily spend limit of ${limit} is reached; it resets at 00:00 UTC.")]
    DailyLimitExceeded {
        limit: money::Money,
        retry_after_s: u64,
    },
    /// An account without credit sent more free-model requests than allowed.
    #[error("Free models are limited to {per_minute} requests per minute for accounts without credit; add credit or retry later.")]
    FreeRateLimited { per_minute: u32, retry_after_s: u64 },
    /// The key spent its budget for the period.
    #[error("This API key's {period} budget of ${budget} is spent.")]
    KeyBudgetExceeded {
        budget: money::Money,
        period: &'static str,
        /// `None` for a lifetime budget, which no wait restores.
        retry_after_s: Option<u64>,
    },
    /// The key's expiry time has passed.
    #[error("This API key expired at {0}. Ask an owner of the account for a new one.")]
    KeyExpired(chrono::DateTime<chrono::Utc>),
    /// The key sent its requests-per-minute limit.
    #[error(
        "This API key is limited to {per_minute} requests per minute; retry in {retry_after_s} s."
    )]
    KeyRateLimited { per_minute: u32, retry_after_s: u64 },
    /// The key used its tokens-per-minute limit.
    #[error(
        "This API key is limited to {per_minute} tokens per minute; retry in {retry_after_s} s."
    )]
    KeyTokensLimited { per_minute: u32, retry_after_s: u64 },
    /// The key may not ask for this tier or model.
    #[error("This API key may use only {}; `{}` is not one of them.", .allowed.join(", "), echo(.asked))]
    ModelNotAllowed { asked: String, allowed: Vec<String> },
    /// The gateway itself failed (a bug); the log has the details.
    #[error("The gateway failed to handle the request ({0}); please retry.")]
    Internal(String),
    /// Every candidate failed with a retryable error.
    #[error("Every candidate failed: {}", summarize(.attempts))]
    AllCandidatesFailed {
        attempts: Vec<Attempt>,
        retry_after_s: Option<u64>,
    },
}

/// What an account without credit asked for that only credit buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpaid {
    /// Chat with no free model among the candidates.
    Chat,
    /// Embeddings, which are all paid.
    Embeddings,
}

impl fmt::Display for Unpaid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unpaid::Chat => "The account has no credit left and no free model can serve this request. Add credit, or use a tier with free models (economy).",
            Unpaid::Embeddings => "The account has no credit left; embedding models are all paid. Add credit.",
        })
    }
}

/// What the request named that no configured provider serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unconfigured {
    /// A chat tier.
    Tier(Tier),
    /// `auto`, with no provider configured at all.
    Auto,
    /// An embedding alias (`embed-small`, ...).
    Alias(String),
    /// One catalog model (chat or embedding).
    Model { id: String, provider: ProviderId },
}

impl fmt::Display for Unconfigured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unconfigured::Tier(tier) => {
                write!(f, "No provider serving the {tier} tier is configured.")
            }
            Unconfigured::Auto => f.write_str("No provider is configured."),
            Unconfigured::Alias(alias) => write!(f, "No provider serving {alias} is configured."),
            Unconfigured::Model { id, provider } => write!(
                f,
                "Provider `{provider}` of model `{id}` is not configured on this gateway."
            ),
        }
    }
}

/// How big a prompt that does not fit is, as the error tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSize {
    /// Counted exactly in the model's own tokens.
    Exact(u64),
    /// Counted in o200k tokens and scaled by the provider's tokenizer margin.
    Estimated {
        tokens: u64,
        o200k: u64,
        margin_permille: u64,
        provider: ProviderId,
    },
    /// The count stopped at this many o200k tokens.
    MoreThan(u64),
}

impl fmt::Display for PromptSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptSize::Exact(t) => write!(f, "{t} tokens"),
            PromptSize::Estimated {
                tokens,
                o200k,
                margin_permille,
                provider,
            } => write!(
                f,
                "{tokens} tokens ({o200k} o200k tokens × {:.2}, the estimate for {provider}'s tokenizer)",
                *margin_permille as f64 / 1_000.0
            ),
            PromptSize::MoreThan(t) => write!(f, "more than {t} o200k tokens"),
        }
    }
}

/// A request too long for the largest window it could go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// The largest context window among the candidates.
    pub window: u32,
    /// The prompt's size.
    pub input: PromptSize,
    /// The completion tokens asked for.
    pub out: u64,
    /// The tier, when the request named one (else one model).
    pub tier: Option<Tier>,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TooLong {
            window,
            input,
            out,
            tier,
        } = self;
        match tier {
            None => write!(
                f,
                "This model's maximum context length is {window} tokens. However, the messages take {input} and the completion asks for {out}. Please reduce the length of the messages or completion."
            ),
            Some(tier) => write!(
                f,
                "No {tier} model can hold this request: the messages take {input} and the completion asks for {out}, but the largest context window in the tier is {window} tokens."
            ),
        }
    }
}

fn names(providers: &[ProviderId]) -> String {
    let mut names: Vec<String> = providers.iter().map(ToString::to_string).collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

/// The most characters of a client's own input an error message repeats
/// (a model name, a path): enough to recognise it, never a megabyte back.
pub const ECHO_CHARS: usize = 200;
/// The most characters of any error message.
const MESSAGE_CHARS: usize = 2_000;

/// A client's input as an error message repeats it: cut to [`ECHO_CHARS`].
pub fn echo(input: &str) -> String {
    events::cap(input, ECHO_CHARS)
}

fn summarize(attempts: &[Attempt]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .map(|a| format!("{}/{}: {}", a.provider, a.model, a.error))
        .collect();
    parts.join("; ")
}

impl GatewayError {
    /// The provider attempts behind a failure (none for refusals before any).
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            GatewayError::AllCandidatesFailed { attempts, .. }
            | GatewayError::UpstreamRejected { attempts, .. } => attempts,
            _ => &[],
        }
    }

    /// A 400 naming the request field at fault.
    pub fn invalid(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: param.into(),
            code: None,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidRequest { .. } | GatewayError::ContextLengthExceeded(_) => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::MissingKey
            | GatewayError::IncorrectKey { .. }
            | GatewayError::KeyExpired(_) => StatusCode::UNAUTHORIZED,
            GatewayError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            GatewayError::KeyBudgetExceeded { retry_after_s, .. } => match retry_after_s {
                Some(_) => StatusCode::TOO_MANY_REQUESTS,
                None => StatusCode::PAYMENT_REQUIRED,
            },
            GatewayError::KeyRateLimited { .. } | GatewayError::KeyTokensLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::ModelNotFound(_)
            | GatewayError::EmbeddingModelNotFound(_)
            | GatewayError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::NoProvider(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::InsufficientCredits(_) => StatusCode::PAYMENT_REQUIRED,
            GatewayError::ProviderBlocked { .. } => StatusCode::FORBIDDEN,
            GatewayError::DailyLimitExceeded { .. } | GatewayError::FreeRateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            GatewayError::AllCandidatesFailed { attempts, .. } => {
                let tried: Vec<_> = attempts.iter().filter(|a| !a.skipped).collect();
                if !tried.is_empty() && tried.iter().all(|a| a.status == Some(429)) {
                    StatusCode::TOO_MANY_REQUESTS
                } else if attempts.iter().any(|a| matches!(a.status, Some(401 | 403))) {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }
    }

    fn kind_param_code(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            GatewayError::InvalidRequest { param, code, .. } => {
                ("invalid_request_error", param.as_deref(), *code)
            }
            GatewayError::ContextLengthExceeded(_) => (
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
            ),
            GatewayError::MissingKey | GatewayError::IncorrectKey { .. } => {
                ("invalid_request_error", None, Some("invalid_api_key"))
            }
            GatewayError::ModelNotFound(_) | GatewayError::EmbeddingModelNotFound(_) => (
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            GatewayError::PayloadTooLarge(_) => {
                ("invalid_request_error", None, Some("request_too_large"))
            }
            GatewayError::RequestTimeout => {
                ("invalid_request_error", None, Some("request_timeout"))
            }
            GatewayError::Busy => ("service_unavailable_error", None, Some("server_busy")),
            GatewayError::UnknownRoute(_) => ("invalid_request_error", None, Some("unknown_url")),
            GatewayError::NoProvider(_) => (
                "service_unavailable_error",
                None,
                Some("no_provider_available"),
            ),
            GatewayError::UpstreamRejected { .. } => {
                ("invalid_request_error", None, Some("upstream_rejected"))
            }
            GatewayError::Internal(_) => ("server_error", None, Some("internal_error")),
            GatewayError::InsufficientCredits(_) => {
                ("insufficient_quota", None, Some("insufficient_credits"))
            }
            GatewayError::ProviderBlocked { .. } => {
                ("permission_error", Some("model"), Some("provider_blocked"))
            }
            GatewayError::DailyLimitExceeded { .. } => {
                ("rate_limit_error", None, Some("daily_limit_exceeded"))
            }
            GatewayError::FreeRateLimited { .. } => {
                ("rate_limit_error", None, Some("rate_limit_exceeded"))
            }
            GatewayError::KeyExpired(_) => ("invalid_request_error", None, Some("key_expired")),
            GatewayError::KeyBudgetExceeded { .. } => {
                ("insufficient_quota", None, Some("key_budget_exceeded"))
            }
            GatewayError::KeyRateLimited { .. } => {
                ("rate_limit_error", None, Some("key_rate_limited"))
            }
            GatewayError::KeyTokensLimited { .. } => {
                ("rate_limit_error", None, Some("key_tokens_limited"))
            }
            GatewayError::ModelNotAllowed { .. } => {
                ("permission_error", Some("model"), Some("model_not_allowed"))
            }
            GatewayError::AllCandidatesFailed { .. } => (
                "service_unavailable_error",
                None,
                Some("all_candidates_failed"),
            ),
        }
    }
}

/// An error as every ingress reports it: status, OpenAI-shaped body and
/// `Retry-After`; each ingress renders it in its own envelope.
pub struct Rendered {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after_s: Option<u64>,
}

impl GatewayError {
    /// The status, body and `Retry-After` of this error.
    pub fn render(&self) -> Rendered {
        let status = self.status();
        let (kind, param, code) = self.kind_param_code();
        let kind = if status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limit_error"
        } else {
            kind
        };
        let message = events::cap(&self.to_string(), MESSAGE_CHARS);
        let param = param.map(|p| events::cap(p, ECHO_CHARS));
        let mut body = ErrorBody::new(kind, message, param.as_deref(), code);
        let mut retry_after = match self {
            GatewayError::DailyLimitExceeded { retry_after_s, .. }
            | GatewayError::FreeRateLimited { retry_after_s, .. }
            | GatewayError::KeyRateLimited { retry_after_s, .. }
            | GatewayError::KeyTokensLimited { retry_after_s, .. } => Some(*retry_after_s),
            GatewayError::KeyBudgetExceeded { retry_after_s, .. } => *retry_after_s,
            GatewayError::Busy => Some(1),
            _ => None,
        };
        if let GatewayError::AllCandidatesFailed {
            attempts,
            retry_after_s,
        } = self
        {
            body.error.extra.insert(
                "attempts".into(),
                serde_json::to_value(attempts).unwrap_or_default(),
            );
            retry_after = *retry_after_s;
        }
        let retryable_status = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        Rendered {
            status,
            body,
            retry_after_s: retry_after.filter(|_| retryable_status),
        }
    }
}

impl Rendered {
    /// The response carrying `body`, the ingress's own envelope of this error.
    pub fn respond(self, body: impl Serialize) -> Response {
        respond(self.status, self.retry_after_s, body)
    }
}

fn respond(status: StatusCode, retry_after_s: Option<u64>, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let Rendered {
            status,
            body,
            retry_after_s,
        } = self.render();
        respond(status, retry_after_s, body)
    }
}
