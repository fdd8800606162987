//! HTTP handlers of the public API.

pub mod chat;
pub mod embeddings;
pub mod health;
pub mod messages;
pub mod models;
pub mod responses;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use money::Money;
use serde::de::DeserializeOwned;

use crate::accounts::Allowance;
use crate::error::GatewayError;
use crate::health::Monitored;
use crate::keys::{Caller, KeyRing};
use crate::{headers, Gateway};

/// A request body read whole, and its share of the gateway's body memory
/// (held while the body is).
pub struct ReadBody {
    pub bytes: Bytes,
    _memory: tokio::sync::OwnedSemaphorePermit,
}

/// Reads the body of an authenticated request: refused at once when its
/// declared length is over the limit or the gateway's memory for bodies in
/// flight is spent (503, retry in a second); 408 when it does not arrive
/// in time (see `server`).
async fn read_body(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<ReadBody, GatewayError> {
    let limit = gateway.config.body_limit_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge(limit));
    }
    let memory = gateway.body_memory(declared.unwrap_or(limit))?;
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(ReadBody {
            bytes,
            _memory: memory,
        }),
        Err(e) => {
            let inner = e.into_inner();
            if crate::server::timed_out(inner.as_ref()) {
                Err(GatewayError::RequestTimeout)
            } else if inner.is::<http_body_util::LengthLimitError>() {
                Err(GatewayError::PayloadTooLarge(limit))
            } else {
                Err(GatewayError::invalid(
                    format!("Could not read the request body: {inner}"),
                    None,
                ))
            }
        }
    }
}

/// A request as every ingress that calls providers receives it: the caller,
/// what they may use (checked before the body is read, so a refusal costs
/// no upload), and the body parsed as `T`. An axum extractor; a handler that
/// answers in another envelope takes `Result<Received<T>, GatewayError>`.
pub struct Received<T> {
    /// Whose key it is.
    pub caller: Caller,
    /// What the caller's account may use now.
    pub allowance: Allowance,
    /// The `X-Model-Router-Tags` header's tags (the body may add more).
    pub tags: events::attribution::Tags,
    /// The parsed body.
    pub request: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<Gateway>> for Received<T> {
    type Rejection = GatewayError;

    async fn from_request(request: Request, gateway: &Arc<Gateway>) -> Result<Self, GatewayError> {
        let (parts, body) = request.into_parts();
        let caller = authenticate(&gateway.keys, &parts.headers)?;
        let allowance = gateway.allowance(&caller)?;
        gateway
            .key_meter
            .admit(&caller, std::time::Instant::now())?;
        let tags = crate::attribution::header_tags(&parts.headers)?;
        let body = read_body(gateway, &parts.headers, body).await?;
        Ok(Received {
            caller,
            allowance,
            tags,
            request: parse(&body.bytes)?,
        })
    }
}

impl<T> Received<T> {
    /// The same request in another form (an ingress's request as chat).
    pub fn try_map<U>(
        self,
        f: impl FnOnce(T) -> Result<U, GatewayError>,
    ) -> Result<Received<U>, GatewayError> {
        Ok(Received {
            caller: self.caller,
            allowance: self.allowance,
            tags: self.tags,
            request: f(self.request)?,
        })
    }
}

/// The caller of an endpoint that reads a key and nothing else about the
/// account (models, health, explain, count_tokens).
impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Self, GatewayError> {
        authenticate(&gateway.keys, &parts.headers)
    }
}

/// A JSON body read within the gateway's limits (see [`read_body`]) and
/// parsed as `T`; put it after [`Caller`] so the key is checked first.
pub struct Parsed<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Gateway>> for Parsed<T> {
    type Rejection = GatewayError;

    async fn from_request(request: Request, gateway: &Arc<Gateway>) -> Result<Self, GatewayError> {
        let (parts, body) = request.into_parts();
        let body = read_body(gateway, &parts.headers, body).await?;
        parse(&body.bytes).map(Parsed)
    }
}

/// Parses a JSON body. Path tracking costs time on every request, so it runs
/// only on failure, to name the field or the position of what is wrong.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|_| explain_parse_error::<T>(body))
}

fn explain_parse_error<T: DeserializeOwned>(body: &[u8]) -> GatewayError {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(e) => e,
        Ok(_) => match deserializer.end() {
            Err(e) => {
                return GatewayError::invalid(
                    format!("The request body is not valid JSON: {e}"),
                    None,
                )
            }
            Ok(()) => return GatewayError::invalid("The request body could not be read.", None),
        },
    };
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_data() && path != "." {
        GatewayError::invalid(format!("Invalid value for `{path}`: {inner}"), Some(path))
    } else if inner.is_data() {
        GatewayError::invalid(format!("Invalid request body: {inner}"), None)
    } else {
        GatewayError::invalid(format!("The request body is not valid JSON: {inner}"), None)
    }
}

/// The routing headers every successful response carries.
pub fn routing_headers(
    response: &mut Response,
    model: &(impl Monitored + ?Sized),
    attempts: usize,
    cost: Option<Money>,
) {
    // Names checked at compile time, values without a string in between
    // where they are static or numbers: these are on every response.
    const MODEL: HeaderName = HeaderName::from_static(headers::MODEL);
    const PROVIDER: HeaderName = HeaderName::from_static(headers::PROVIDER);
    const ATTEMPTS: HeaderName = HeaderName::from_static(headers::ATTEMPTS);
    const COST: HeaderName = HeaderName::from_static(headers::COST);
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(model.id()) {
        headers.insert(MODEL, id);
    }
    headers.insert(
        PROVIDER,
        HeaderValue::from_static(model.provider().as_str()),
    );
    headers.insert(ATTEMPTS, HeaderValue::from(attempts));
    if let Some(cost) = cost.and_then(|cost| HeaderValue::from_str(&cost.to_string()).ok()) {
        headers.insert(COST, cost);
    }
}

/// Checks the key against the key ring: `Authorization: Bearer mr_sk_…`, or
/// `x-api-key: mr_sk_…` as Anthropic's clients send it.
pub fn authenticate(keys: &KeyRing, headers: &HeaderMap) -> Result<Caller, GatewayError> {
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    let x_api_key = headers.get("x-api-key");
    if authorization.is_none() && x_api_key.is_none() {
        return Err(GatewayError::MissingKey);
    }
    // A bearer token if there is one, else `x-api-key` (an `Authorization`
    // of another scheme, set by a proxy, does not hide it).
    let bearer = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let key = bearer
        .or_else(|| x_api_key.and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .unwrap_or_default();
    if let Some(caller) = keys.verify(key) {
        if let Some(at) = caller
            .limits
            .expires_at
            .filter(|&at| at <= chrono::Utc::now())
        {
            return Err(GatewayError::KeyExpired(at));
        }
        return Ok(caller);
    }
    Err(GatewayError::IncorrectKey {
        redacted: redact(key),
    })
}

/// Shows a key's shape without revealing it: `mr_sk_ab…wxyz`.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}
