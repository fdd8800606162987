//! Anthropic's prompt cache as the API plays it: the last `cache_control`
//! breakpoint caches the prompt's prefix up to and including its block
//! (tools, then system, then messages, in that order) for five minutes; a
//! later request to the same model with the same prefix reads it instead.
//! Prefixes under [`MIN_TOKENS`] are not cached, as on the real API. Cache
//! writes and reads are reported apart from `input_tokens`, which counts the
//! rest of the prompt.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anthropic::{Content, ContentBlock, MessagesRequest, System};

/// The shortest prefix the API caches (Sonnet and Opus models).
pub const MIN_TOKENS: u64 = 1024;
/// How long a written prefix stays readable without a hit.
const TTL: Duration = Duration::from_secs(300);
/// Prefixes remembered at most; the oldest are forgotten first.
const CAPACITY: usize = 10_000;

/// Prefixes written, by hash, and when they were last used.
#[derive(Default)]
pub struct PromptCache {
    seen: Mutex<HashMap<u64, Instant>>,
}

/// Of a request's input tokens, how many were written to and read from the cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    pub written: u64,
    pub read: u64,
}

impl PromptCache {
    /// Looks `request`'s cached prefix up (writing it when new); `count`
    /// counts a text's tokens the way the request's input is counted.
    pub fn apply(&self, request: &MessagesRequest, count: impl Fn(&str) -> u64) -> Cached {
        let Some((key, text)) = prefix(request) else {
            return Cached::default();
        };
        let tokens = count(&text);
        if tokens < MIN_TOKENS {
            return Cached::default();
        }
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else {
            return Cached::default();
        };
        seen.retain(|_, used| now.duration_since(*used) < TTL);
        if seen.len() >= CAPACITY {
            seen.clear();
        }
        match seen.insert(key, now) {
            Some(_) => Cached {
                written: 0,
                read: tokens,
            },
            None => Cached {
                written: tokens,
                read: 0,
            },
        }
    }
}

/// The hash of the prompt up to its last breakpoint, and the text in it;
/// `None` when no block carries `cache_control`.
fn prefix(request: &MessagesRequest) -> Option<(u64, String)> {
    let mut hasher = DefaultHasher::new();
    request.model.hash(&mut hasher);
    let mut text = String::new();
    let mut cut: Option<(u64, usize)> = None;
    let mut mark = |hasher: &DefaultHasher, text: &String, marked: bool| {
        if marked {
            cut = Some((hasher.finish(), text.len()));
        }
    };
    for tool in request.tools.iter().flatten() {
        serde_json::to_string(tool)
            .unwrap_or_default()
            .hash(&mut hasher);
        mark(&hasher, &text, tool.extra.contains_key("cache_control"));
    }
    let system: &[ContentBlock] = match &request.system {
        Some(System::Blocks(blocks)) => blocks,
        Some(System::Text(system)) => {
            system.hash(&mut hasher);
            text.push_str(system);
            &[]
        }
        None => &[],
    };
    let turns = request.messages.iter().flat_map(|m| match &m.content {
        Content::Blocks(blocks) => blocks.as_slice(),
        Content::Text(_) => &[],
    });
    for block in system.iter().chain(turns) {
        serde_json::to_string(block)
            .unwrap_or_default()
            .hash(&mut hasher);
        if let Some(t) = block.as_text() {
            text.push_str(t);
        }
        mark(&hasher, &text, marked(block));
    }
    let (key, len) = cut?;
    text.truncate(len);
    Some((key, text))
}

fn marked(block: &ContentBlock) -> bool {
    match block {
        ContentBlock::Text { extra, .. }
        | ContentBlock::Image { extra, .. }
        | ContentBlock::ToolUse { extra, .. }
        | ContentBlock::ToolResult { extra, .. } => extra.contains_key("cache_control"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(system: &str, question: &str, cached: bool) -> MessagesRequest {
        let mut block = json!({"type": "text", "text": system});
        if cached {
            block["cache_control"] = json!({"type": "ephemeral"});
        }
        serde_json::from_value(json!({
            "model": "claude-sonnet-4-6", "max_tokens": 10, "system": [block],
            "messages": [{"role": "user", "content": question}]
        }))
        .unwrap()
    }

    fn words(text: &str) -> u64 {
        text.split_whitespace().count() as u64
    }

    #[test]
    fn a_marked_prefix_is_written_once_then_read_whatever_follows_it() {
        let cache = PromptCache::default();
        let long = "word ".repeat(2000);
        let first = cache.apply(&request(&long, "one?", true), words);
        assert_eq!(
            first,
            Cached {
                written: 2000,
                read: 0
            }
        );
        let second = cache.apply(&request(&long, "another question?", true), words);
        assert_eq!(
            second,
            Cached {
                written: 0,
                read: 2000
            }
        );
        let changed = cache.apply(&request(&format!("{long} more"), "one?", true), words);
        assert_eq!(changed.written, 2001);
    }

    #[test]
    fn unmarked_or_short_prefixes_are_not_cached() {
        let cache = PromptCache::default();
        let long = "word ".repeat(2000);
        assert_eq!(
            cache.apply(&request(&long, "q", false), words),
            Cached::default()
        );
        assert_eq!(
            cache.apply(&request("short", "q", true), words),
            Cached::default()
        );
        assert_eq!(
            cache.apply(&request("short", "q", true), words),
            Cached::default()
        );
    }
}
