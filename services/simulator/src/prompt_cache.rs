//! Prompt caching as Anthropic's API and Bedrock's Converse play it: the
//! last breakpoint (a `cache_control` mark on a block, or a Converse
//! `cachePoint` after what it caches) caches the prompt's prefix up to it
//! (tools, then system, then messages, in that order) for five minutes; a
//! later request to the same model with the same prefix reads it instead.
//! Prefixes under [`MIN_TOKENS`] are not cached, as on the real APIs. Cache
//! writes and reads are reported apart from `input_tokens`, which counts the
//! rest of the prompt.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anthropic::{Content, ContentBlock, MessagesRequest, System};
use bedrock::ConverseRequest;

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
    /// Looks a Messages request's cached prefix up (writing it when new);
    /// `count` counts a text's tokens the way the request's input is counted.
    pub fn messages(&self, request: &MessagesRequest, count: impl Fn(&str) -> u64) -> Cached {
        self.apply(prefix(request), count)
    }

    /// The same for a Converse request to `model`.
    pub fn converse(
        &self,
        model: &str,
        request: &ConverseRequest,
        count: impl Fn(&str) -> u64,
    ) -> Cached {
        self.apply(converse_prefix(model, request), count)
    }

    fn apply(&self, prefix: Option<(u64, String)>, count: impl Fn(&str) -> u64) -> Cached {
        let Some((key, text)) = prefix else {
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

/// As [`prefix`], for Converse: cache points stand after what they cache.
fn converse_prefix(model: &str, request: &ConverseRequest) -> Option<(u64, String)> {
    let mut hasher = DefaultHasher::new();
    model.hash(&mut hasher);
    let mut text = String::new();
    let mut cut: Option<(u64, usize)> = None;
    let tools = request.tool_config.iter().flat_map(|c| &c.tools);
    for tool in tools {
        match tool {
            bedrock::Tool::CachePoint(_) => cut = Some((hasher.finish(), text.len())),
            spec => serde_json::to_string(spec)
                .unwrap_or_default()
                .hash(&mut hasher),
        }
    }
    for block in request.system.iter().flatten() {
        match block {
            bedrock::SystemBlock::CachePoint(_) => cut = Some((hasher.finish(), text.len())),
            bedrock::SystemBlock::Text(t) => {
                t.hash(&mut hasher);
                text.push_str(t);
            }
        }
    }
    for block in request.messages.iter().flat_map(|m| &m.content) {
        match block {
            bedrock::ContentBlock::CachePoint(_) => cut = Some((hasher.finish(), text.len())),
            bedrock::ContentBlock::Text(t) => {
                t.hash(&mut hasher);
                text.push_str(t);
            }
            other => serde_json::to_string(other)
                .unwrap_or_default()
                .hash(&mut hasher),
        }
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
        let first = cache.messages(&request(&long, "one?", true), words);
        assert_eq!(
            first,
            Cached {
                written: 2000,
                read: 0
            }
        );
        let second = cache.messages(&request(&long, "another question?", true), words);
        assert_eq!(
            second,
            Cached {
                written: 0,
                read: 2000
            }
        );
        let changed = cache.messages(&request(&format!("{long} more"), "one?", true), words);
        assert_eq!(changed.written, 2001);
    }

    #[test]
    fn unmarked_or_short_prefixes_are_not_cached() {
        let cache = PromptCache::default();
        let long = "word ".repeat(2000);
        assert_eq!(
            cache.messages(&request(&long, "q", false), words),
            Cached::default()
        );
        assert_eq!(
            cache.messages(&request("short", "q", true), words),
            Cached::default()
        );
        assert_eq!(
            cache.messages(&request("short", "q", true), words),
            Cached::default()
        );
    }
}
