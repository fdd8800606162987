//! The control plane's errors, and how each reaches a person (an HTML page)
//! or a program (the JSON admin API's error envelope).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::view::ErrorPage;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// The input is not acceptable; the message says why.
    #[error("{0}")]
    BadInput(String),
    /// One named field of the input is not acceptable.
    #[error("{message}")]
    Invalid {
        param: &'static str,
        message: String,
    },
    /// No valid session or admin key.
    #[error("Please log in.")]
    Unauthenticated,
    /// Logged in, but the role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// A form without this site's CSRF token.
    #[error("This form expired or did not come from this site. Reload the page and try again.")]
    Csrf,
    /// Nothing of this account has that id.
    #[error("Not found.")]
    NotFound,
    /// A named thing that does not exist, said in full.
    #[error("{0}")]
    Missing(String),
    /// Too many sign-up or login attempts from one address.
    #[error("Too many attempts. Try again in {0} seconds.")]
    RateLimited(u64),
    /// The change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A service this needs is not configured or not reachable; nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// The event log could not take the change; nothing changed.
    #[error("The event log is unavailable, so nothing was changed. Try again shortly.")]
    Log(#[from] eventlog::LogError),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
    /// The ledger's projection could not be read.
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
    /// A bug or a broken dependency.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<store::StoreError> for CpError {
    fn from(e: store::StoreError) -> CpError {
        match e {
            store::StoreError::Database(e) => CpError::Store(e),
            other => CpError::Internal(other.to_string()),
        }
    }
}

impl CpError {
    /// The field `param` is wrong: `message` says how.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> CpError {
        CpError::Invalid {
            param,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            CpError::BadInput(_) | CpError::Invalid { .. } => StatusCode::BAD_REQUEST,
            CpError::Unauthenticated => StatusCode::UNAUTHORIZED,
            CpError::Forbidden(_) | CpError::Csrf => StatusCode::FORBIDDEN,
            CpError::NotFound | CpError::Missing(_) => StatusCode::NOT_FOUND,
            CpError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            CpError::Conflict(_) => StatusCode::CONFLICT,
            CpError::Log(_) | CpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CpError::Store(_) | CpError::Ledger(_) | CpError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CpError::BadInput(_) | CpError::Invalid { .. } => "invalid_request",
            CpError::Unauthenticated => "unauthenticated",
            CpError::Forbidden(_) => "forbidden",
            CpError::Csrf => "csrf_token_invalid",
            CpError::NotFound | CpError::Missing(_) => "not_found",
            CpError::RateLimited(_) => "rate_limited",
            CpError::Conflict(_) => "conflict",
            CpError::Log(_) => "event_log_unavailable",
            CpError::Unavailable(_) => "unavailable",
            CpError::Store(_) | CpError::Ledger(_) | CpError::Internal(_) => "internal_error",
        }
    }

    /// What a user may read: internal details go to the log, not the page.
    pub(crate) fn public_message(&self) -> String {
        match self {
            CpError::Store(_) | CpError::Ledger(_) | CpError::Internal(_) => {
                tracing::error!(error = %self, "control plane error");
                "Something went wrong on our side; it has been logged. Try again.".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            CpError::RateLimited(s) => Some(*s),
            _ => None,
        }
    }
}

/// An error shown as a page (a login redirect when not logged in).
#[derive(Debug)]
pub struct PageError(pub CpError);

/// An error answered in the admin API's JSON envelope.
#[derive(Debug)]
pub struct ApiError(pub CpError);

macro_rules! wraps {
    ($($source:ty),*) => {$(
        impl From<$source> for PageError {
            fn from(e: $source) -> Self { PageError(e.into()) }
        }
        impl From<$source> for ApiError {
            fn from(e: $source) -> Self { ApiError(e.into()) }
        }
    )*};
}
wraps!(
    CpError,
    eventlog::LogError,
    sqlx::Error,
    ledger::LedgerError
);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let CpError::Unauthenticated = self.0 {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
        }
        let status = self.0.status();
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.0.public_message(),
        };
        let mut response = (status, crate::view::html(&page)).into_response();
        if let Some(s) = self.0.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = serde_json::json!({
            "error": {
                "message": self.0.public_message(),
                "type": if status.is_server_error() { "server_error" } else { "invalid_request_error" },
                "param": match &self.0 { CpError::Invalid { param, .. } => serde_json::json!(param), _ => serde_json::Value::Null },
                "code": self.0.code(),
            }
        });
        let mut response = (status, Json(body)).into_response();
        if let Some(s) = self.0.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        response
    }
}
