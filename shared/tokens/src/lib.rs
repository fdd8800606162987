//! Token counting for chat prompts.
//!
//! Counts use OpenAI's o200k BPE: ASCII text through an exact fast path (see
//! `ascii`), anything else through `bpe-openai`, which produces exactly
//! tiktoken's counts several times faster than tiktoken-rs. A [`Prompt`] gathers every piece
//! of text a request sends, so callers can first decide with cheap byte-length
//! bounds (a token is at least one byte) and tokenize only when those bounds
//! cannot decide. Long messages are cached by content hash: a conversation
//! resends its history every turn, and only the new turn needs the tokenizer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use openai::ChatRequest;

mod ascii;

/// Tokens OpenAI adds around each message (role and separators).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING_TOKENS: u64 = 3;
/// A low-detail image.
pub const IMAGE_TOKENS_LOW: u64 = 85;
/// The most a high-detail image can cost (2048×768 after scaling: 8 tiles × 170 + 85).
pub const IMAGE_TOKENS_HIGH: u64 = 1_445;

/// Messages shorter than this are counted directly; longer ones go through the cache.
const CACHE_MIN_BYTES: usize = 2_048;
/// Cache entries kept before the cache is cleared and starts over.
const CACHE_CAPACITY: usize = 8_192;

/// Every piece of text a request puts before the model, plus tokens that do not come from text.
#[derive(Debug)]
pub struct Prompt<'a> {
    pieces: Vec<Cow<'a, str>>,
    fixed_tokens: u64,
}

impl<'a> Prompt<'a> {
    /// Gathers the text of messages, names, tool calls, tool definitions and the response schema.
    pub fn of(request: &'a ChatRequest) -> Self {
        let mut pieces: Vec<Cow<'a, str>> = Vec::with_capacity(request.messages.len() + 2);
        let mut fixed_tokens = REPLY_PRIMING_TOKENS;
        for message in &request.messages {
            fixed_tokens += TOKENS_PER_MESSAGE;
            pieces.extend(message.texts().map(Cow::Borrowed));
            if let Some(name) = &message.name {
                pieces.push(Cow::Borrowed(name));
                fixed_tokens += 1;
            }
            for call in message.tool_calls.iter().flatten() {
                pieces.push(Cow::Borrowed(&call.function.name));
                pieces.push(Cow::Borrowed(&call.function.arguments));
            }
            for image in message.images() {
                fixed_tokens += match image.detail.as_deref() {
                    Some("low") => IMAGE_TOKENS_LOW,
                    _ => IMAGE_TOKENS_HIGH,
                };
            }
        }
        for tool in request.tools.iter().flatten() {
            pieces.push(Cow::Owned(
                serde_json::to_string(&tool.function).unwrap_or_default(),
            ));
        }
        if let Some(format) = &request.response_format {
            pieces.push(Cow::Owned(format.to_string()));
        }
        Prompt {
            pieces,
            fixed_tokens,
        }
    }

    /// Bytes of text in the prompt.
    pub fn text_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.len() as u64).sum()
    }

    /// A bound no tokenizer can exceed: one token per byte plus the fixed tokens.
    pub fn upper_bound(&self) -> u64 {
        self.text_bytes() + self.fixed_tokens
    }
}

/// Whether [`o200k`] has been loaded.
static LOADED: AtomicBool = AtomicBool::new(false);

/// OpenAI's o200k tokenizer. It holds about 70 MB (its dictionary embedded in
/// the binary and the tables decoded from it), so it is loaded on first use,
/// or by [`TokenCounter::warm_up`].
pub fn o200k() -> &'static bpe_openai::Tokenizer {
    if !LOADED.load(Ordering::Relaxed) {
        LOADED.store(true, Ordering::Relaxed);
    }
    bpe_openai::o200k_base()
}

/// Whether the o200k tokenizer (and its memory) has been loaded in this process.
pub fn loaded() -> bool {
    LOADED.load(Ordering::Relaxed)
}

/// Counts o200k tokens, caching long texts.
pub struct TokenCounter {
    cache: Mutex<HashMap<u64, u64>>,
    hasher: RandomState,
    tokenized_bytes: AtomicU64,
}

impl Default for TokenCounter {
    fn default() -> Self {
        TokenCounter {
            cache: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
            tokenized_bytes: AtomicU64::new(0),
        }
    }
}

impl TokenCounter {
    /// Loads the vocabulary now rather than on the first request that needs
    /// an exact count (which then waits about 50 ms, once).
    pub fn warm_up(&self) {
        o200k().count("warm");
        ascii::warm_up();
    }

    /// Bytes run through the tokenizer so far (cache hits excluded): what counting has cost.
    pub fn tokenized_bytes(&self) -> u64 {
        self.tokenized_bytes.load(Ordering::Relaxed)
    }

    /// The exact o200k token count of `text`.
    pub fn count_text(&self, text: &str) -> u64 {
        self.count_text_till(text, u64::MAX).unwrap_or(u64::MAX)
    }

    /// The exact token count of `prompt`.
    pub fn count(&self, prompt: &Prompt<'_>) -> u64 {
        self.count_till(prompt, u64::MAX).unwrap_or(u64::MAX)
    }

    /// The token count of `prompt`, or `None` as soon as it is known to exceed `limit`.
    pub fn count_till(&self, prompt: &Prompt<'_>, limit: u64) -> Option<u64> {
        let mut total = prompt.fixed_tokens;
        for piece in &prompt.pieces {
            let remaining = limit.checked_sub(total)?;
            total += self.count_text_till(piece, remaining)?;
        }
        (total <= limit).then_some(total)
    }

    fn count_text_till(&self, text: &str, limit: u64) -> Option<u64> {
        let key = (text.len() >= CACHE_MIN_BYTES).then(|| self.hasher.hash_one((text.len(), text)));
        if let Some(&n) = key
            .and_then(|k| self.cache.lock().ok()?.get(&k).copied())
            .as_ref()
        {
            return (n <= limit).then_some(n);
        }
        self.tokenized_bytes
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        let tokenizer = o200k();
        let capped = usize::try_from(limit).unwrap_or(usize::MAX);
        let n = if text.is_ascii() {
            ascii::count_till(text, capped)? as u64
        } else if (text.len() as u64) <= limit {
            tokenizer.count(text) as u64
        } else {
            // Cannot fit when longer than the limit in tokens: stop counting once past it.
            tokenizer.count_till_limit(&tokenizer.normalize(text), capped)? as u64
        };
        if let (Some(key), Ok(mut cache)) = (key, self.cache.lock()) {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key, n);
        }
        (n <= limit).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn counts_match_tiktoken_o200k() {
        let counter = TokenCounter::default();
        // Reference counts from tiktoken's o200k_base.
        assert_eq!(counter.count_text("Hello, world!"), 4);
        assert_eq!(counter.count_text("tiktoken is great!"), 6);
        assert_eq!(counter.count_text("lorem ipsum dolor sit amet "), 7);
        assert_eq!(counter.count_text(""), 0);
    }

    #[test]
    fn prompt_counts_messages_overhead_images_and_tools() {
        let counter = TokenCounter::default();
        let req = request(serde_json::json!({
            "model": "economy",
            "messages": [
                {"role": "system", "content": "Hello, world!"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Hello, world!"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
                ]}
            ]
        }));
        let prompt = Prompt::of(&req);
        assert_eq!(
            counter.count(&prompt),
            4 + 4 + 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS + IMAGE_TOKENS_LOW
        );
        assert!(prompt.upper_bound() >= counter.count(&prompt));

        let with_tools = request(serde_json::json!({
            "model": "economy",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        }));
        let plain = request(
            serde_json::json!({"model": "economy", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert!(counter.count(&Prompt::of(&with_tools)) > counter.count(&Prompt::of(&plain)) + 5);
    }

    #[test]
    fn count_till_stops_past_the_limit_and_cache_agrees() {
        let counter = TokenCounter::default();
        let long = "lorem ipsum dolor sit amet ".repeat(2_000);
        let req = request(
            serde_json::json!({"model": "x", "messages": [{"role": "user", "content": long}]}),
        );
        let prompt = Prompt::of(&req);
        let exact = counter.count(&prompt);
        assert_eq!(counter.count(&prompt), exact, "cached count differs");
        assert_eq!(counter.count_till(&prompt, exact), Some(exact));
        assert_eq!(counter.count_till(&prompt, exact - 1), None);
        let fresh = TokenCounter::default();
        assert_eq!(fresh.count_till(&prompt, 100), None);
        assert_eq!(
            fresh.count(&prompt),
            exact,
            "a refused limit must not poison the cache"
        );
    }
}
