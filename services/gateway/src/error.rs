//! Every way a request can fail, mapped to HTTP once, in the OpenAI envelope.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
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
    #[error("{0}")]
    ContextLengthExceeded(String),
    #[error("{0}")]
    Unauthorized(String),
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
    #[error("{0}")]
    NoProvider(String),
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
    InsufficientCredits(String),
    /// Every candidate's provider is blocked by the account.
    #[error("{0}")]
    ProviderBlocked(String),
    /// The account reached its daily spend limit.
    #[error("The daily spend limit of ${limit} is reached; it resets at 00:00 UTC.")]
    DailyLimitExceeded {
        limit: money::Money,
        retry_after_s: u64,
    },
    /// An account without credit sent more free-model requests than allowed.
    #[error("Free models are limited to {per_minute} requests per minute for accounts without credit; add credit or retry later.")]
    FreeRateLimited { per_minute: u32, retry_after_s: u64 },
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
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::ModelNotFound(_)
            | GatewayError::EmbeddingModelNotFound(_)
            | GatewayError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::NoProvider(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::InsufficientCredits(_) => StatusCode::PAYMENT_REQUIRED,
            GatewayError::ProviderBlocked(_) => StatusCode::FORBIDDEN,
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
            GatewayError::Unauthorized(_) => {
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
            GatewayError::ProviderBlocked(_) => {
                ("permission_error", Some("model"), Some("provider_blocked"))
            }
            GatewayError::DailyLimitExceeded { .. } => {
                ("rate_limit_error", None, Some("daily_limit_exceeded"))
            }
            GatewayError::FreeRateLimited { .. } => {
                ("rate_limit_error", None, Some("rate_limit_exceeded"))
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
            | GatewayError::FreeRateLimited { retry_after_s, .. } => Some(*retry_after_s),
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
