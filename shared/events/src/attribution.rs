//! Attribution: who a request was made for (the OpenAI `user` field) and how
//! the account labels it (tags, from the body's `metadata` pairs and the
//! `X-Model-Router-Tags` header). Usage events carry both so spend can be
//! filtered and broken down by them.
//!
//! Both are bounded, because every usage event and request row carries
//! them: a `user` of at most [`MAX_USER_CHARS`] characters, at most
//! [`MAX_TAGS`] tags of at most [`MAX_TAG_CHARS`] characters each. A tag is
//! `key=value` (a `metadata` pair) or a bare label; control characters and
//! commas (the header's separator) are refused, never silently dropped.

use serde_json::Value;

/// The most characters of the `user` field.
pub const MAX_USER_CHARS: usize = 256;
/// The most tags one request may carry (OpenAI's `metadata` allows 16 pairs).
pub const MAX_TAGS: usize = 16;
/// The most characters of one tag, `key=value` whole.
pub const MAX_TAG_CHARS: usize = 128;

/// Why attribution input was refused, and which parameter it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// What is wrong, for the client.
    pub message: String,
    /// The parameter (`user`, `metadata`, or the header's name).
    pub param: &'static str,
}

/// The header that carries tags: `team=search, env=prod, nightly`.
pub const TAGS_HEADER: &str = "x-model-router-tags";

fn refuse(param: &'static str, message: String) -> Refused {
    Refused { message, param }
}

/// The `user` field checked: `None` when empty.
pub fn user(value: &str) -> Result<Option<String>, Refused> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > MAX_USER_CHARS {
        return Err(refuse(
            "user",
            format!("`user` is longer than {MAX_USER_CHARS} characters."),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(refuse(
            "user",
            "`user` contains a control character.".into(),
        ));
    }
    Ok(Some(value.to_owned()))
}

/// One tag, trimmed and checked.
pub fn tag(text: &str, param: &'static str) -> Result<String, Refused> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('=') {
        return Err(refuse(param, format!("The tag `{text}` has no name.")));
    }
    if text.chars().count() > MAX_TAG_CHARS {
        return Err(refuse(
            param,
            format!("A tag is longer than {MAX_TAG_CHARS} characters."),
        ));
    }
    if text.chars().any(|c| c.is_control() || c == ',') {
        return Err(refuse(
            param,
            "A tag contains a comma or a control character.".into(),
        ));
    }
    Ok(text.to_owned())
}

/// A request's tags, in the order first given, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    /// Adds the tags of an `X-Model-Router-Tags` value (comma-separated;
    /// empty items are skipped).
    pub fn header(&mut self, value: &str) -> Result<(), Refused> {
        for item in value.split(',').filter(|i| !i.trim().is_empty()) {
            self.push(tag(item, TAGS_HEADER)?, TAGS_HEADER)?;
        }
        Ok(())
    }

    /// Adds the pairs of a `metadata` object as `key=value` tags; values
    /// must be strings, as OpenAI's `metadata` requires.
    pub fn metadata(&mut self, metadata: &Value) -> Result<(), Refused> {
        let Value::Object(pairs) = metadata else {
            return Err(refuse(
                "metadata",
                "`metadata` must be an object of string values.".into(),
            ));
        };
        for (key, value) in pairs {
            let Value::String(value) = value else {
                return Err(refuse(
                    "metadata",
                    format!("`metadata.{key}` must be a string."),
                ));
            };
            if key.contains('=') {
                return Err(refuse(
                    "metadata",
                    format!("The `metadata` key `{key}` contains `=`."),
                ));
            }
            self.push(tag(&format!("{key}={value}"), "metadata")?, "metadata")?;
        }
        Ok(())
    }

    fn push(&mut self, tag: String, param: &'static str) -> Result<(), Refused> {
        if self.0.contains(&tag) {
            return Ok(());
        }
        if self.0.len() == MAX_TAGS {
            return Err(refuse(
                param,
                format!(
                    "A request carries at most {MAX_TAGS} tags (header and `metadata` together)."
                ),
            ));
        }
        self.0.push(tag);
        Ok(())
    }

    /// The tags.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_and_metadata_make_one_bounded_list() {
        let mut tags = Tags::default();
        tags.header(" team=search , nightly,, ").unwrap();
        tags.metadata(&json!({"team": "search", "env": "prod"}))
            .unwrap();
        assert_eq!(
            tags.into_vec(),
            ["team=search", "nightly", "env=prod"].map(String::from)
        );

        let mut many = Tags::default();
        let header = (0..MAX_TAGS).map(|i| format!("t{i}")).collect::<Vec<_>>();
        many.header(&header.join(",")).unwrap();
        let over = many.metadata(&json!({"one": "more"})).unwrap_err();
        assert_eq!(over.param, "metadata");
    }

    #[test]
    fn bad_attribution_is_refused_with_its_parameter() {
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        for (metadata, why) in [
            (json!("text"), "must be an object"),
            (json!({"n": 1}), "must be a string"),
            (json!({"a=b": "c"}), "contains `=`"),
            (json!({"k": long}), "longer than"),
            (json!({"k": "line\nbreak"}), "control character"),
        ] {
            let refused = Tags::default().metadata(&metadata).unwrap_err();
            assert!(refused.message.contains(why), "{refused:?}");
            assert_eq!(refused.param, "metadata");
        }
        assert_eq!(Tags::default().header("=v").unwrap_err().param, TAGS_HEADER);
        assert!(user(&"u".repeat(MAX_USER_CHARS)).unwrap().is_some());
        assert!(user(&"u".repeat(MAX_USER_CHARS + 1)).is_err());
        assert!(user("tab\there").is_err());
        assert_eq!(user("").unwrap(), None);
    }
}
