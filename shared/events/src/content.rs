//! `content_recorded`: what a request said and what the model answered,
//! for an account that opted in to capturing it in its traces. Published
//! by the gateway just before the request's usage event (through the same
//! journal, under the usage subject), only for such accounts, and bounded
//! in size. The event log keeps it as long as it keeps usage.

use serde::{Deserialize, Serialize};

use crate::AccountId;

/// The most characters each side (the conversation, the answer) keeps.
pub const MAX_CONTENT_CHARS: usize = 16_384;

/// The prompt and completion text of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecorded {
    pub account: AccountId,
    /// The request's `X-Request-Id`, as in its usage event.
    pub request_id: String,
    /// The conversation's text, latest messages kept when it is over
    /// [`MAX_CONTENT_CHARS`].
    pub input: Vec<ContentMessage>,
    /// The answer's text (empty when none), cut at [`MAX_CONTENT_CHARS`].
    pub output: String,
}

/// One message's role and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentMessage {
    pub role: String,
    pub text: String,
}

impl ContentRecorded {
    /// The conversation kept within [`MAX_CONTENT_CHARS`]: from the latest
    /// message back, each cut to what is left (marked `…`).
    pub fn bounded_input(
        messages: impl DoubleEndedIterator<Item = (String, String)>,
    ) -> Vec<ContentMessage> {
        let mut left = MAX_CONTENT_CHARS;
        let mut kept = Vec::new();
        for (role, text) in messages.rev() {
            if left == 0 {
                break;
            }
            let text = crate::cap(&text, left);
            left = left.saturating_sub(text.chars().count());
            kept.push(ContentMessage { role, text });
        }
        kept.reverse();
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_messages_are_kept_within_the_bound() {
        let long = "x".repeat(MAX_CONTENT_CHARS - 10);
        let messages = vec![
            ("system".to_owned(), "be brief".to_owned()),
            ("user".to_owned(), "y".repeat(50)),
            ("user".to_owned(), long.clone()),
        ];
        let kept = ContentRecorded::bounded_input(messages.into_iter());
        assert_eq!(kept.len(), 2, "the system message falls off");
        assert_eq!(kept[1].text, long);
        assert_eq!(
            kept[0].text.chars().count(),
            11,
            "cut to what was left, marked"
        );
        assert!(kept[0].text.ends_with('…'));
        let total: usize = kept.iter().map(|m| m.text.chars().count()).sum();
        assert!(total <= MAX_CONTENT_CHARS + 1);
    }
}
