//! The HTTP side every adapter shares: one connection pool per provider,
//! the connect / first-byte / idle timeouts, error statuses turned into
//! [`ProviderError`]s, and SSE bodies turned into streams of `data` payloads.
//!
//! Redirects are not followed. A provider's API answers where it is asked;
//! a redirect means a wrong `base_url` or something in between, and
//! following it would send the request's credentials to another host
//! (reqwest strips `Authorization` across hosts, not `x-api-key` or
//! `x-goog-api-key`). It is an error naming where it pointed, and the
//! request moves to the next candidate.

use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{ConfigError, ProviderError, TimeoutKind, Timeouts};
use crate::config::ProviderSettings;
use crate::sse::Event;
use catalog::ProviderId;

/// A provider's HTTP client.
pub struct Upstream {
    client: reqwest::Client,
    timeouts: Timeouts,
}

impl Upstream {
    /// A pooled client with `settings`' timeouts.
    pub fn new(settings: &ProviderSettings) -> Result<Upstream, ConfigError> {
        let timeouts = Timeouts::from(settings);
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Upstream { client, timeouts })
    }

    /// POSTs `body` as JSON and waits (up to the first-byte timeout) for a
    /// success status; an error status becomes [`ProviderError::Status`] with
    /// the provider's own message and `Retry-After`.
    pub async fn post(
        &self,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: &impl Serialize,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = serde_json::to_vec(body).map_err(|e| ProviderError::Protocol(e.to_string()))?;
        self.post_bytes(url, headers, body).await
    }

    /// [`Upstream::post`] with the body already serialized (and perhaps
    /// signed), sent byte for byte.
    pub async fn post_bytes(
        &self,
        url: &reqwest::Url,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ProviderError> {
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let request = self.client.post(url.clone()).headers(headers).body(body);
        let response = tokio::time::timeout(self.timeouts.first_byte, request.send())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutKind::FirstByte))?
            .map_err(|e| classify(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(redirected(status, response.headers()));
        }
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

    /// Reads a whole JSON body within the idle timeout.
    pub async fn json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ProviderError> {
        let bytes = tokio::time::timeout(self.timeouts.idle, response.bytes())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutKind::Idle))?
            .map_err(|e| ProviderError::Interrupted(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Protocol(e.to_string()))
    }

    /// The body as it arrives, each read within the idle timeout. Callers
    /// stop reading at their dialect's final event; a body that ends before
    /// it, an idle timeout or a broken body yields one error and ends the stream.
    pub fn body(
        &self,
        response: reqwest::Response,
    ) -> impl Stream<Item = Result<bytes::Bytes, ProviderError>> + Send + 'static {
        let idle = self.timeouts.idle;
        stream::unfold(
            (response.bytes_stream().boxed(), false),
            move |(mut bytes, done)| async move {
                if done {
                    return None;
                }
                let item = match tokio::time::timeout(idle, bytes.next()).await {
                    Err(_) => Err(ProviderError::Timeout(TimeoutKind::Idle)),
                    Ok(Some(Ok(chunk))) => return Some((Ok(chunk), (bytes, false))),
                    Ok(Some(Err(e))) => Err(ProviderError::Interrupted(e.to_string())),
                    Ok(None) => Err(ProviderError::EndOfBody),
                };
                Some((item, (bytes, true)))
            },
        )
    }

    /// The events of an SSE body, ending as [`Upstream::body`] does.
    pub fn sse(
        &self,
        response: reqwest::Response,
    ) -> impl Stream<Item = Result<Event, ProviderError>> + Send + 'static {
        crate::sse::events(self.body(response))
    }
}

/// A header map from static names and values computed once at start.
pub fn header(
    provider: ProviderId,
    name: &'static str,
    value: &str,
    sensitive: bool,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| ConfigError::ApiKey { provider })?;
    value.set_sensitive(sensitive);
    Ok((HeaderName::from_static(name), value))
}

/// `base` (or the provider's public URL) joined with `path`, parsed once.
pub fn endpoint(
    provider: ProviderId,
    base: Option<&str>,
    default: &str,
    path: &str,
) -> Result<reqwest::Url, ConfigError> {
    let base = base.unwrap_or(default).trim_end_matches('/');
    let url = format!("{base}{path}");
    reqwest::Url::parse(&url).map_err(|e| ConfigError::BaseUrl {
        provider,
        url,
        reason: e.to_string(),
    })
}

fn classify(error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout(TimeoutKind::Connect)
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

/// A redirect, not followed (see the module's note).
fn redirected(status: u16, headers: &HeaderMap) -> ProviderError {
    let to = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "no readable Location".to_owned(),
            |l| l.chars().take(200).collect(),
        );
    ProviderError::Status {
        status,
        message: format!(
            "the provider redirected to {to}; redirects are not followed (check its base_url)"
        ),
        retry_after: None,
    }
}

/// The provider's own error message (`error.message`, as OpenAI, Anthropic
/// and Gemini put it, or `message`, as AWS does), or the raw body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            ["/error/message", "/message", "/Message"]
                .iter()
                .find_map(|p| v.pointer(p).and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_else(|| body.chars().take(500).collect())
}
