//! What `model: "auto"` reads in a conversation: one pass over every text
//! (system prompt, every turn, tool results), counting what makes a request
//! harder or easier. Counting only; weighing is in [`super::score`].

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use openai::{ChatRequest, Role};

/// Everything the score is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Bytes of system / developer instructions.
    pub system_bytes: usize,
    /// Expert-role instructions ("you are a senior ...", "act as an expert").
    pub expert_role: bool,
    /// Output-format demands (JSON, schema, table, exact format).
    pub format_demands: usize,
    /// Fenced code blocks, and the bytes inside them.
    pub code_blocks: usize,
    pub code_bytes: usize,
    /// Lines that look like code outside fences.
    pub code_lines: usize,
    /// Stack traces and compiler errors.
    pub stack_traces: usize,
    /// Every text's bytes, and the number of turns.
    pub total_bytes: usize,
    pub turns: usize,
    /// Tool definitions offered, and tool calls / results in the history.
    pub tools: usize,
    pub tool_turns: usize,
    /// Reasoning markers: step by step, prove, trade-offs, design, ...
    pub reasoning: usize,
    /// Maths: equations, LaTeX, theorems.
    pub math: usize,
    /// A proof is asked for.
    pub proof: bool,
    /// Distinct technical terms (languages, APIs, infrastructure, tests).
    pub tech_terms: usize,
    /// Distinct task verbs in the last user turn (implement, design, plan, ...).
    pub tasks: usize,
    /// Words of output asked for in the text ("a 600-word post").
    pub requested_words: usize,
    /// Numbered or "must" requirements in the last user turn.
    pub constraints: usize,
    /// Markers of simple tasks: translate, summarise, extract, greet, ...
    pub simple: usize,
    /// The output asked for (`max_tokens`).
    pub max_tokens: Option<u32>,
    /// Images attached.
    pub images: usize,
    /// Share of non-ASCII letters in the last user turn (0–1).
    pub non_ascii: f64,
    /// Bytes of the last user turn.
    pub last_user_bytes: usize,
}

const EXPERT: [&str; 6] = [
    "you are a senior",
    "you are an expert",
    "act as an expert",
    "you are a principal",
    "world-class",
    "you are a staff",
];
const FORMAT: [&str; 7] = [
    "json",
    "schema",
    "table",
    "exact format",
    "yaml",
    "markdown table",
    "csv",
];
const REASONING: [&str; 26] = [
    "step by step",
    "step-by-step",
    "trade-off",
    "tradeoff",
    "analyze",
    "analyse",
    "architecture",
    "design a",
    "design an",
    "design the",
    "optimize",
    "optimise",
    "edge case",
    "root cause",
    "race condition",
    "deadlock",
    "complexity",
    "why does",
    "refactor",
    "consistency",
    "partition",
    "linearizab",
    "lock-free",
    "memory ordering",
    "rigorous",
    "scales to",
];
const PROOF: [&str; 5] = ["prove", "proof", "show that", "démontre", "beweise"];
const MATH: [&str; 21] = [
    "theorem",
    "lemma",
    "integral",
    "derivative",
    "equation",
    "\\frac",
    "\\sum",
    "eigen",
    "modulo",
    "induction",
    "irrational",
    "prime",
    "converge",
    "recurrence",
    "polynomial",
    "matrix",
    "∑",
    "∫",
    "√",
    "≤",
    "≥",
];
const TECH: [&str; 39] = [
    "python",
    "javascript",
    "typescript",
    "rust",
    "golang",
    " go ",
    " go?",
    "java",
    "c++",
    "sql",
    "bash",
    "docker",
    "kubernetes",
    "api",
    "endpoint",
    "http",
    "rest ",
    "json",
    "database",
    "postgres",
    "s3",
    "function",
    "class",
    "async",
    "thread",
    "cache",
    "middleware",
    "test",
    "script",
    "regex",
    "compiler",
    "parser",
    "query",
    "deploy",
    "node",
    "react",
    "css",
    "express",
    "generic",
];
const TASKS: [&str; 18] = [
    "implement",
    "design",
    "plan",
    "propose",
    "investigate",
    "migrate",
    "refactor",
    "review",
    "write",
    "compare",
    "update",
    "draft",
    "find",
    "port",
    "fix",
    "add",
    "recommend",
    "explain",
];
const SIMPLE: [&str; 16] = [
    "translate",
    "summarize",
    "summarise",
    "tl;dr",
    "extract",
    "classify",
    "fix the typo",
    "fix typos",
    "rephrase",
    "thank",
    "hello",
    "hi!",
    "what's the capital",
    "what is the capital",
    "spell",
    "convert",
];
const TRACES: [&str; 6] = [
    "traceback (most recent call last)",
    "panicked at",
    "exception in thread",
    "error[e",
    "segmentation fault",
    "    at ",
];

/// Which list a pattern comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Expert,
    Format,
    Reasoning,
    Proof,
    Math,
    Tech,
    Task,
    Simple,
    Trace,
}

/// How many patterns the lists hold together: one bit each when counting
/// distinct patterns.
const PATTERNS: usize = EXPERT.len()
    + FORMAT.len()
    + REASONING.len()
    + PROOF.len()
    + MATH.len()
    + TECH.len()
    + TASKS.len()
    + SIMPLE.len()
    + TRACES.len();

/// Every list in one automaton, matched case-insensitively in one pass per
/// text. A pattern belongs to one list only: the automaton reports one id per match.
struct Matcher {
    automaton: AhoCorasick,
    groups: Vec<Group>,
}

static MATCHER: LazyLock<Matcher> = LazyLock::new(|| {
    let lists: [(Group, &[&str]); 9] = [
        (Group::Expert, &EXPERT),
        (Group::Format, &FORMAT),
        (Group::Reasoning, &REASONING),
        (Group::Proof, &PROOF),
        (Group::Math, &MATH),
        (Group::Tech, &TECH),
        (Group::Task, &TASKS),
        (Group::Simple, &SIMPLE),
        (Group::Trace, &TRACES),
    ];
    let (groups, patterns): (Vec<Group>, Vec<&str>) = lists
        .iter()
        .flat_map(|(group, list)| list.iter().map(move |p| (*group, *p)))
        .unzip();
    // A full DFA (about 430 KB, built once): one table look-up per byte. The
    // default here, an NFA with a prefilter, took 1.7x as long on long
    // conversations, where a keyword turns up every hundred bytes or so.
    let automaton = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(AhoCorasickKind::DFA))
        .build(patterns)
        .expect("the keyword lists are valid patterns");
    Matcher { automaton, groups }
});

/// What one text holds, by list: occurrences, and distinct patterns.
#[derive(Default)]
struct Hits {
    count: [usize; 9],
    distinct: [usize; 9],
}

fn hits(text: &str) -> Hits {
    let matcher = &*MATCHER;
    let mut seen = [0u64; PATTERNS.div_ceil(64)];
    let mut hits = Hits::default();
    let bytes = text.as_bytes();
    for found in matcher.automaton.find_iter(text) {
        // A keyword starts a word: "table" is not in "uncountable", nor
        // "test" in "latest" (a keyword may still end inside one: "primes").
        let inside_a_word = found.start() > 0
            && bytes[found.start()].is_ascii_alphanumeric()
            && bytes[found.start() - 1].is_ascii_alphanumeric();
        if inside_a_word {
            continue;
        }
        let id = found.pattern().as_usize();
        let group = matcher.groups[id] as usize;
        hits.count[group] += 1;
        let (cell, bit) = (id / 64, 1u64 << (id % 64));
        if seen[cell] & bit == 0 {
            seen[cell] |= bit;
            hits.distinct[group] += 1;
        }
    }
    hits
}

fn looks_like_code(line: &str) -> bool {
    let t = line.trim();
    t.ends_with(';')
        || t.ends_with('{')
        || t.starts_with("def ")
        || t.starts_with("fn ")
        || t.starts_with("class ")
        || t.starts_with("import ")
        || t.starts_with("#include")
        || t.starts_with("func ")
        || t.starts_with("SELECT ")
        || t.starts_with("return ")
}

/// Reads `request`.
pub fn read(request: &ChatRequest) -> Signals {
    let mut s = Signals {
        tools: request.tools.as_ref().map_or(0, Vec::len),
        max_tokens: request.requested_output_tokens(),
        ..Default::default()
    };
    let last_user = request.messages.iter().rposition(|m| m.role == Role::User);
    for (i, message) in request.messages.iter().enumerate() {
        s.turns += 1;
        s.images += message.images().count();
        if message.tool_calls.is_some() || message.role == Role::Tool {
            s.tool_turns += 1;
        }
        for text in message.texts() {
            s.total_bytes += text.len();
            let h = hits(text);
            let n = |g: Group| h.count[g as usize];
            if matches!(message.role, Role::System | Role::Developer) {
                s.system_bytes += text.len();
                s.expert_role |= n(Group::Expert) > 0;
            }
            s.format_demands += n(Group::Format);
            s.stack_traces += n(Group::Trace).min(3);
            s.reasoning += n(Group::Reasoning);
            s.proof |= n(Group::Proof) > 0;
            s.math += n(Group::Math);
            s.tech_terms = s.tech_terms.max(h.distinct[Group::Tech as usize]);
            read_code(text, &mut s);
            if Some(i) == last_user {
                s.simple += n(Group::Simple);
                s.tasks += h.distinct[Group::Task as usize];
                read_last_user(text, &mut s);
            }
        }
    }
    s
}

/// "a 600-word post", "4,000 words": the largest word count asked for.
fn requested_words(text: &str) -> usize {
    if mentions_word(text) {
        words_asked(text)
    } else {
        0
    }
}

/// [`requested_words`] read word by word.
fn words_asked(text: &str) -> usize {
    let mut words = text.split_whitespace().peekable();
    let mut most = 0;
    while let Some(w) = words.next() {
        if !w.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let (number, rest) = match w.split_once('-') {
            Some((n, rest)) => (n, rest),
            None => (w, words.peek().copied().unwrap_or_default()),
        };
        let asks_words = rest
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("word"));
        if asks_words {
            let digits: String = number.chars().filter(|c| *c != ',').collect();
            most = most.max(digits.parse().unwrap_or(0));
        }
    }
    most
}

/// Whether "word" appears in any case: without it no count of words is
/// asked for, and the word-by-word reading is skipped.
fn mentions_word(text: &str) -> bool {
    let b = text.as_bytes();
    memchr::memchr2_iter(b'w', b'W', b).any(|i| {
        b.get(i..i + 4)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"word"))
    })
}

/// Alphabetic characters, and how many of them are not ASCII: one pass,
/// byte by byte when the text is ASCII, as most is.
fn letters(text: &str) -> (usize, usize) {
    if text.is_ascii() {
        return (text.bytes().filter(u8::is_ascii_alphabetic).count(), 0);
    }
    text.chars()
        .filter(|c| c.is_alphabetic())
        .fold((0, 0), |(all, foreign), c| {
            (all + 1, foreign + usize::from(!c.is_ascii()))
        })
}

static MUST: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(" must "));

fn read_code(text: &str, s: &mut Signals) {
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            if !in_fence {
                s.code_blocks += 1;
            }
            in_fence = !in_fence;
        } else if in_fence {
            s.code_bytes += line.len() + 1;
        } else if looks_like_code(line) {
            s.code_lines += 1;
        }
    }
}

fn read_last_user(text: &str, s: &mut Signals) {
    s.last_user_bytes += text.len();
    s.requested_words = s.requested_words.max(requested_words(text));
    s.constraints += MUST.find_iter(text.as_bytes()).count()
        + text
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                t.len() > 2
                    && t.as_bytes()[0].is_ascii_digit()
                    && matches!(t.as_bytes()[1], b'.' | b')')
            })
            .count();
    let (letters, foreign) = letters(text);
    s.non_ascii = foreign as f64 / letters.max(1) as f64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_json(value: serde_json::Value) -> Signals {
        read(&serde_json::from_value(value).unwrap())
    }

    fn user(text: &str) -> Signals {
        read_json(json!({"model": "auto", "messages": [{"role": "user", "content": text}]}))
    }

    #[test]
    fn each_signal_is_counted_where_it_appears() {
        let s = read_json(json!({"model": "auto", "max_tokens": 4000,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [
            {"role": "system", "content": "You are a senior engineer. Answer in JSON."},
            {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "1", "content": "ok"},
            {"role": "user", "content": "Prove it step by step.\n1. It must be O(n).\n2. No allocation.\n```rust\nfn main() {}\n```"}
        ]}));
        assert!(s.expert_role && s.system_bytes > 0);
        assert_eq!(
            (s.format_demands, s.tools, s.tool_turns, s.images),
            (1, 1, 2, 1)
        );
        assert_eq!((s.code_blocks, s.code_bytes), (1, 13));
        assert!(s.proof && s.reasoning == 1, "prove; step by step: {s:?}");
        assert_eq!(s.tech_terms, 1, "json: {s:?}");
        assert_eq!(s.constraints, 3, "two numbered lines and a must");
        assert_eq!((s.turns, s.max_tokens), (5, Some(4000)));
    }

    #[test]
    fn traces_maths_simple_tasks_and_languages() {
        assert_eq!(
            user("Traceback (most recent call last):\n  File x").stack_traces,
            1
        );
        assert_eq!(
            user("thread 'main' panicked at src/lib.rs:3").stack_traces,
            1
        );
        assert!(user("Use induction to prove the lemma: ∑ i ≤ n²").math >= 3);
        assert_eq!(user("Translate this to French: good morning").simple, 1);
        assert!(
            user("Traduis ce texte en français, s'il te plaît: où est la gare?").non_ascii > 0.0
        );
        assert_eq!(user("Привет, как дела?").non_ascii, 1.0);
        assert_eq!(user("def f(x):\n    return x;\n").code_lines, 2);
        assert_eq!(user("Write a 600-word post").requested_words, 600);
        let plain = user("Prove that the set of reals is uncountable; the latest trust data.");
        assert_eq!(
            (plain.format_demands, plain.tech_terms),
            (0, 0),
            "{plain:?}"
        );
        assert_eq!(user("in about 4,000 words").requested_words, 4000);
        let tasks = user("Design the database, implement it in Rust and write tests.");
        assert_eq!((tasks.tasks, tasks.tech_terms), (3, 3), "{tasks:?}");
    }

    /// The plain readings the fast ones replaced: word by word without
    /// the look for "word" first, character by character, `str::matches`.
    fn plain(text: &str) -> (usize, usize, usize, usize) {
        let most = words_asked(text);
        let letters = text.chars().filter(|c| c.is_alphabetic()).count();
        let foreign = text
            .chars()
            .filter(|c| c.is_alphabetic() && !c.is_ascii())
            .count();
        (most, letters, foreign, text.matches(" must ").count())
    }

    fn fast(text: &str) -> (usize, usize, usize, usize) {
        let (letters, foreign) = letters(text);
        let must = MUST.find_iter(text.as_bytes()).count();
        (requested_words(text), letters, foreign, must)
    }

    #[test]
    fn fast_readings_count_what_the_plain_ones_did() {
        let edges = [
            "",
            "Write 300 WORDS",
            "a 600-WoRd post",
            "in 2,500\u{a0}words",
            "no\u{a0}12 words here",
            "x must must must y",
            " must  must ",
            "Word 12 wor",
            "Привет, мир 5 слов",
            "naïve café: 40-words",
            "12word",
            "wwwword 7 words w",
        ];
        let corpus = crate::auto::eval::SHIPPED.lines().flat_map(|line| {
            let item: serde_json::Value = serde_json::from_str(line).unwrap();
            let request: ChatRequest = serde_json::from_value(item["request"].clone()).unwrap();
            let texts: Vec<String> = request
                .messages
                .iter()
                .flat_map(|m| m.texts().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            texts
        });
        let mut checked = 0;
        for text in edges.iter().map(|t| t.to_string()).chain(corpus) {
            assert_eq!(fast(&text), plain(&text), "{text:?}");
            checked += 1;
        }
        assert!(checked > 1_259, "every labelled text was read: {checked}");
    }
}
