//! The OpenAI error envelope: `{"error": {"message", "type", "param", "code"}}`.

use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorObject,
}

/// What went wrong, in OpenAI's words. `param` and `code` are `null` when not applicable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// A sentence for humans.
    pub message: String,
    /// The error class (`invalid_request_error`, `authentication_error`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if any.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<String>,
    /// Anything else the producer attached (e.g. the list of attempts).
    #[serde(flatten)]
    pub extra: crate::Extra,
}

impl ErrorBody {
    /// An envelope with the given class, message, param and code.
    pub fn new(
        kind: &str,
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        ErrorBody {
            error: ErrorObject {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
                extra: Default::default(),
            },
        }
    }
}
