//! A fast, exact o200k counter for ASCII text.
//!
//! o200k splits text into pieces with a regular expression, then runs BPE on
//! each piece. For ASCII input the expression reduces to a handful of byte
//! classes, so [`split`] walks it directly; and most pieces are whole
//! vocabulary entries (one token), found with one hash lookup before falling
//! back to BPE. Property tests check both steps against `bpe-openai`.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

/// FNV-1a: pieces are a few bytes long and the keys are the fixed vocabulary,
/// so SipHash's DoS resistance buys nothing here and would cost most of the lookup.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Every o200k token's bytes.
static VOCAB: LazyLock<HashSet<&'static [u8], BuildHasherDefault<Fnv>>> = LazyLock::new(|| {
    let bpe = &crate::o200k().bpe;
    (0..bpe.num_tokens() as u32)
        .map(|id| bpe.token_bytes(id))
        .collect()
});

/// Loads the vocabulary set now.
pub(crate) fn warm_up() {
    LazyLock::force(&VOCAB);
}

/// Texts at least this long are split and counted on several threads.
const PARALLEL_MIN_BYTES: usize = 192 * 1024;
/// Threads a long text is counted on; read once, as the lookup reads cgroup files.
static THREADS: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)));
/// How far past an even split point to look for a piece boundary.
const BOUNDARY_SEARCH_BYTES: usize = 16 * 1024;

/// The exact o200k count of ASCII `text`, or `None` once it exceeds `limit`.
///
/// Long texts are cut at piece boundaries and the parts counted in parallel:
/// the guard's cost is request latency, and a 100k-token prompt is ~400 KB.
pub(crate) fn count_till(text: &str, limit: usize) -> Option<usize> {
    if text.len() < PARALLEL_MIN_BYTES {
        return count_serial(text, limit);
    }
    let parts = THREADS.min(text.len() / (PARALLEL_MIN_BYTES / 2));
    if parts <= 1 {
        return count_serial(text, limit);
    }
    let chunks = cut_at_boundaries(text, parts);
    let counts: Vec<Option<usize>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks[1..]
            .iter()
            .map(|chunk| scope.spawn(move || count_serial(chunk, limit)))
            .collect();
        let first = count_serial(chunks[0], limit);
        std::iter::once(first)
            .chain(handles.into_iter().map(|h| h.join().ok().flatten()))
            .collect()
    });
    let total = counts
        .into_iter()
        .try_fold(0usize, |sum, n| Some(sum + n?))?;
    (total <= limit).then_some(total)
}

/// `text` cut into up to `parts` pieces, each cut where an o200k piece starts:
/// before a space that follows a non-space and precedes a letter (`x| word`).
/// No piece can span such a point, so the counts of the parts add up exactly.
fn cut_at_boundaries(text: &str, parts: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut cuts = vec![0];
    for k in 1..parts {
        let from = (text.len() * k / parts).max(cuts[cuts.len() - 1] + 1);
        let to = (from + BOUNDARY_SEARCH_BYTES).min(text.len().saturating_sub(1));
        if let Some(at) = (from..to).find(|&i| is_boundary(bytes, i)) {
            cuts.push(at);
        }
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

fn is_boundary(s: &[u8], i: usize) -> bool {
    i > 0
        && s[i] == b' '
        && !is_space(s[i - 1])
        && s.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
}

fn count_serial(text: &str, limit: usize) -> Option<usize> {
    debug_assert!(text.is_ascii());
    let bpe = &crate::o200k().bpe;
    let mut total = 0;
    for piece in split(text.as_bytes()) {
        total += if VOCAB.contains(piece) {
            1
        } else {
            bpe.count(piece)
        };
        if total > limit {
            return None;
        }
    }
    Some(total)
}

#[cfg(test)]
fn count(text: &str) -> usize {
    count_till(text, usize::MAX).expect("no limit")
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_newline(b: u8) -> bool {
    matches!(b, b'\r' | b'\n')
}

/// `[^\r\n\p{L}\p{N}]`: the optional prefix of a word.
fn is_prefix(b: u8) -> bool {
    !is_newline(b) && !b.is_ascii_alphanumeric()
}

/// `[^\s\p{L}\p{N}]`: punctuation and symbols.
fn is_symbol(b: u8) -> bool {
    !is_space(b) && !b.is_ascii_alphanumeric()
}

/// Length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at the start of `s`, or 0.
fn contraction(s: &[u8]) -> usize {
    if s.first() != Some(&b'\'') {
        return 0;
    }
    let lower = |i: usize| s.get(i).map(u8::to_ascii_lowercase);
    match (lower(1), lower(2)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => 2,
        (Some(b'r' | b'v'), Some(b'e')) => 3,
        (Some(b'l'), Some(b'l')) => 3,
        _ => 0,
    }
}

fn run(s: &[u8], from: usize, class: impl Fn(u8) -> bool) -> usize {
    s[from..].iter().take_while(|&&b| class(b)).count()
}

/// Length of a word piece (o200k's first two alternatives) at the start of `s`, or 0.
fn word(s: &[u8]) -> usize {
    let prefix = usize::from(
        s.first().is_some_and(|&b| is_prefix(b)) && s.get(1).is_some_and(u8::is_ascii_alphabetic),
    );
    let upper = run(s, prefix, |b| b.is_ascii_uppercase());
    let lower = run(s, prefix + upper, |b| b.is_ascii_lowercase());
    if upper + lower == 0 {
        return 0;
    }
    let end = prefix + upper + lower;
    end + contraction(&s[end..])
}

/// The length of the piece at the start of `s` (non-empty, ASCII).
fn piece(s: &[u8]) -> usize {
    let n = word(s);
    if n > 0 {
        return n;
    }
    let digits = run(s, 0, |b| b.is_ascii_digit());
    if digits > 0 {
        return digits.min(3);
    }
    let space = usize::from(s[0] == b' ' && s.get(1).is_some_and(|&b| is_symbol(b)));
    let symbols = run(s, space, is_symbol);
    if symbols > 0 {
        let end = space + symbols;
        return end + run(s, end, |b| is_newline(b) || b == b'/');
    }
    // A whitespace run: up to its last newline; to the end of text; or all but its
    // last character, which then joins the next piece (`\s+(?!\S)`).
    let spaces = run(s, 0, is_space);
    if let Some(last_newline) = s[..spaces].iter().rposition(|&b| is_newline(b)) {
        return last_newline + 1;
    }
    if spaces == s.len() || spaces == 1 {
        return spaces;
    }
    spaces - 1
}

/// o200k's pre-tokenization of ASCII text.
pub(crate) fn split(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (head, tail) = rest.split_at(piece(rest).max(1));
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator of tricky ASCII text.
    fn texts() -> impl Iterator<Item = String> {
        const ALPHABET: &[u8] = b"aAbZz  \t\n\r\x0b\x0c'sStTrReEvVmMlLdD09173.,/()-_!?\"#";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..20_000).map(move |i| {
            let len = 1 + i % 40;
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
                })
                .collect()
        })
    }

    #[test]
    fn split_matches_the_o200k_regex() {
        let tokenizer = bpe_openai::o200k_base();
        let samples = [
            "Hello, world! It's 2024: don't WE'LL they've I'M",
            "  leading   spaces\n\n  and\ttabs \n",
            "fn main() {\n    println!(\"hi\");\n}\n// path/to/file.rs\n",
            "HTTPServer parseJSON ABCdef XMLHttpRequest 12345678 v1.2.3",
            "trailing   ",
            "'s's 're'RE 'x' \r\n\r\n end",
        ];
        for text in samples.iter().map(|s| s.to_string()).chain(texts()) {
            let ours: Vec<&[u8]> = split(text.as_bytes()).collect();
            let theirs: Vec<&[u8]> = tokenizer.split(&text).map(str::as_bytes).collect();
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn counts_of_parts_cut_at_boundaries_add_up() {
        let mut checked = 0;
        for text in texts().take(5_000) {
            let whole = count(&text);
            for i in (0..text.len()).filter(|&i| is_boundary(text.as_bytes(), i)) {
                let (a, b) = text.split_at(i);
                assert_eq!(count(a) + count(b), whole, "{a:?} | {b:?}");
                checked += 1;
            }
        }
        assert!(checked > 1_000, "only {checked} cut points exercised");
    }

    #[test]
    fn a_long_text_counts_the_same_in_parallel() {
        let tokenizer = bpe_openai::o200k_base();
        let text: String = texts().take(20_000).collect::<Vec<_>>().join(" w");
        assert!(text.len() > PARALLEL_MIN_BYTES);
        assert!(cut_at_boundaries(&text, 4).len() > 1);
        let exact = tokenizer.count(text.as_str());
        assert_eq!(count(&text), exact);
        assert_eq!(count_till(&text, exact), Some(exact));
        assert_eq!(count_till(&text, exact - 1), None);
    }

    #[test]
    fn count_matches_bpe_openai() {
        let tokenizer = bpe_openai::o200k_base();
        let code = "impl Display for Money { fn fmt(&self, f: &mut Formatter) -> Result { write!(f, \"{}\", self.0) } }\n";
        for text in texts()
            .take(5_000)
            .chain([code.repeat(50), "The quick brown fox. ".repeat(500)])
        {
            assert_eq!(count(&text), tokenizer.count(text.as_str()), "{text:?}");
        }
    }
}
