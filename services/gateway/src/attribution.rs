//! A request's attribution as its usage event records it: the `user` field
//! and tags from the `X-Model-Router-Tags` header and the body's `metadata`
//! (bounds and format in `events::attribution`). `metadata` is the router's:
//! it is taken out of the body and never sent to a provider (OpenAI refuses
//! it without `store`, and other providers' `metadata` means other things).

use axum::http::HeaderMap;
use events::attribution::{self, Refused, Tags, TAGS_HEADER};
use openai::ChatRequest;

use crate::error::GatewayError;

/// Who a request was for and its tags.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// The OpenAI `user` field.
    pub user: Option<String>,
    /// The tags, header first.
    pub tags: Vec<String>,
}

impl From<Refused> for GatewayError {
    fn from(refused: Refused) -> Self {
        GatewayError::invalid(refused.message, Some(refused.param.to_owned()))
    }
}

/// The header's tags, read before the body so a bad header costs no upload.
pub fn header_tags(headers: &HeaderMap) -> Result<Tags, GatewayError> {
    let mut tags = Tags::default();
    for value in headers.get_all(TAGS_HEADER) {
        let value = value.to_str().map_err(|_| {
            GatewayError::invalid(
                "`X-Model-Router-Tags` must be visible ASCII: `key=value, label`.",
                Some(TAGS_HEADER.to_owned()),
            )
        })?;
        tags.header(value)?;
    }
    Ok(tags)
}

/// A chat request's attribution; its `metadata` is taken out of the body.
pub fn of_chat(mut tags: Tags, request: &mut ChatRequest) -> Result<Attribution, GatewayError> {
    if let Some(metadata) = request.extra.remove("metadata") {
        if !metadata.is_null() {
            tags.metadata(&metadata)?;
        }
    }
    Ok(Attribution {
        user: attribution::user(request.user.as_deref().unwrap_or_default())?,
        tags: tags.into_vec(),
    })
}

/// An embeddings request's attribution (its `user` and the header's tags).
pub fn of_embeddings(tags: Tags, user: Option<&str>) -> Result<Attribution, GatewayError> {
    Ok(Attribution {
        user: attribution::user(user.unwrap_or_default())?,
        tags: tags.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_becomes_tags_and_is_not_sent_on() {
        let mut headers = HeaderMap::new();
        headers.insert(TAGS_HEADER, "team=search, nightly".parse().unwrap());
        let mut request: ChatRequest = serde_json::from_value(json!({
            "model": "economy", "user": "u-1", "metadata": {"env": "prod"},
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap();
        let attribution = of_chat(header_tags(&headers).unwrap(), &mut request).unwrap();
        assert_eq!(attribution.user.as_deref(), Some("u-1"));
        assert_eq!(attribution.tags, ["team=search", "nightly", "env=prod"]);
        assert!(
            !request.extra.contains_key("metadata"),
            "never sent upstream"
        );
        assert_eq!(request.user.as_deref(), Some("u-1"), "`user` still is");
    }

    #[test]
    fn a_header_that_is_not_text_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TAGS_HEADER,
            axum::http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert!(header_tags(&headers).is_err());
    }
}
