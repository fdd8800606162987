//! What the learned scorer reads: the conversation's [`Signals`] on a log
//! scale (dense features, each with a name), and the words of the
//! instructions hashed into a fixed space (text features).
//!
//! Text features come from the system prompt's first 1 KiB and the last user
//! turn, where a request says what it wants. That turn is split into its
//! instruction and its material (quoted text, pasted documents, code: see
//! [`instruction`]): the instruction's first 2 KiB and last 512 bytes give
//! instruction features, the material's first 1 KiB gives material words, a
//! separate kind, so "summarise: <a hard-sounding text>" is not read as hard
//! work. The rest of a long conversation is read by the signals (its size,
//! code, traces, tools ...), so scoring stays cheap however long the
//! conversation is. Each instruction word gives three features: the word, its first five letters (a crude stem:
//! `optimise`, `optimize` and `optimisation` share `optim`), and the pair it
//! forms with the word before it. Numbers count as one word, `<num>`, and a
//! number with a short unit as that unit's (`10k`, `64gb`: `<num>k`, `<num>gb`). A run of
//! non-Latin letters (Chinese, Japanese) also gives its letter pairs. Each
//! distinct feature counts once, at a value of one over the fourth root of
//! their number, so a long instruction weighs more than a short one, but not
//! in proportion. The instruction is also matched against [`lexicon`]'s
//! concept groups. Dense features enter as their value only: up to recipe 4
//! each also gave its range (`turns≥1.5`) as a text feature, which fitted the
//! families a fit saw better and the ones it had not seen worse.
//!
//! [`VERSION`] names this recipe: a model file trained on another one is refused.

use openai::{ChatRequest, Role};

use super::signals::{self, Signals};
use super::{instruction, lexicon};

/// The feature recipe's version; bump it whenever a feature changes meaning.
pub const VERSION: u32 = 6;

/// Text features are hashed into `2^HASH_BITS` slots.
pub const HASH_BITS: u32 = 18;

const SYSTEM_HEAD: usize = 1 << 10;
const LAST_HEAD: usize = 2 << 10;
const LAST_TAIL: usize = 512;
const MATERIAL_HEAD: usize = 1 << 10;
const STEM: usize = 5;
const LONG_WORD: usize = 9;
const LETTER_RUNS: usize = 8;
const NUMBER: &str = "<num>";
const MAX_UNIT: usize = 3;

/// The conversation's signals among the dense features.
const SIGNALS: [&str; 30] = [
    "system_prompt_bytes",
    "expert_role",
    "format_demands",
    "code_blocks",
    "code_bytes",
    "code_lines",
    "stack_traces",
    "conversation_bytes",
    "turns",
    "tools_offered",
    "tool_turns",
    "reasoning_markers",
    "maths",
    "proof",
    "technical_terms",
    "task_verbs",
    "requested_words",
    "constraints",
    "simple_task_markers",
    "max_tokens",
    "images",
    "non_english",
    "last_turn_bytes",
    "short_last_turn",
    "long_conversation",
    "instruction_words",
    "material_bytes",
    "question",
    "long_words",
    "long_word_share",
];

/// The dense features, in the order of [`Features::dense`]: the signals,
/// then [`lexicon::GROUPS`].
pub const DENSE: [&str; SIGNALS.len() + lexicon::GROUPS.len()] = {
    let mut out = [""; SIGNALS.len() + lexicon::GROUPS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = if i < SIGNALS.len() {
            SIGNALS[i]
        } else {
            lexicon::GROUPS[i - SIGNALS.len()]
        };
        i += 1;
    }
    out
};

/// The kind of a text feature, for its name in an explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Word,
    Stem,
    Pair,
    Letters,
    Material,
}

impl Kind {
    fn prefix(self) -> u8 {
        match self {
            Kind::Word => b'w',
            Kind::Stem => b's',
            Kind::Pair => b'p',
            Kind::Letters => b'l',
            Kind::Material => b'm',
        }
    }

    /// How an explanation names the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Word => "word",
            Kind::Stem => "stem",
            Kind::Pair => "words",
            Kind::Letters => "letters",
            Kind::Material => "quoted",
        }
    }
}

/// One text feature: its slot, its value, and what it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct TextFeature {
    pub slot: u32,
    pub value: f32,
    pub kind: Kind,
    /// Where its text (a word, stem, pair or letters) is in [`Features::words`].
    pub at: std::ops::Range<u32>,
}

/// Everything a model scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// [`DENSE`]'s values.
    pub dense: [f32; DENSE.len()],
    /// Distinct text features, in the order first seen (which names each).
    pub text: Vec<TextFeature>,
    /// The words read, lowercased and separated by spaces; text features
    /// point into it, so naming them costs nothing until asked.
    pub words: String,
}

impl Features {
    /// What text feature `f` stands for.
    pub fn name(&self, f: &TextFeature) -> &str {
        self.words
            .get(f.at.start as usize..f.at.end as usize)
            .unwrap_or_default()
    }
}

fn log(x: usize, unit: f32) -> f32 {
    (1.0 + x as f32 / unit).ln()
}

fn flag(b: bool) -> f32 {
    f32::from(u8::from(b))
}

/// What the last user turn says beside the signals.
#[derive(Debug, Default, Clone, Copy)]
struct LastTurn {
    instruction_words: usize,
    material_bytes: usize,
    question: bool,
    long_words: usize,
    concepts: [usize; lexicon::GROUPS.len()],
}

/// The dense features of `s` and `last`.
fn dense(s: &Signals, last: LastTurn) -> [f32; DENSE.len()] {
    let signals = [
        log(s.system_bytes, 256.0),
        flag(s.expert_role),
        log(s.format_demands, 1.0),
        log(s.code_blocks, 1.0),
        log(s.code_bytes, 256.0),
        log(s.code_lines, 1.0),
        log(s.stack_traces, 1.0),
        log(s.total_bytes, 1024.0),
        log(s.turns, 1.0),
        log(s.tools, 1.0),
        log(s.tool_turns, 1.0),
        log(s.reasoning, 1.0),
        log(s.math, 1.0),
        flag(s.proof),
        log(s.tech_terms, 1.0),
        log(s.tasks, 1.0),
        log(s.requested_words, 100.0),
        log(s.constraints, 1.0),
        log(s.simple, 1.0),
        log(s.max_tokens.unwrap_or(0) as usize, 1000.0),
        log(s.images, 1.0),
        s.non_ascii as f32,
        log(s.last_user_bytes, 64.0),
        flag(s.last_user_bytes < 60),
        flag(s.total_bytes >= 16 << 10),
        log(last.instruction_words, 8.0),
        log(last.material_bytes, 256.0),
        flag(last.question),
        log(last.long_words, 1.0),
        last.long_words as f32 / last.instruction_words.max(1) as f32,
    ];
    let mut out = [0.0; DENSE.len()];
    out[..SIGNALS.len()].copy_from_slice(&signals);
    for (x, n) in out[SIGNALS.len()..].iter_mut().zip(last.concepts) {
        *x = log(n, 1.0);
    }
    out
}

/// Reads `request`'s features.
pub fn read(request: &ChatRequest) -> Features {
    let s = signals::read(request);
    let mut text = Text::default();
    for message in &request.messages {
        if matches!(message.role, Role::System | Role::Developer) {
            for t in message.texts() {
                text.read(head(t, SYSTEM_HEAD), Kind::Word);
            }
        }
    }
    let before = text.last_words;
    let mut last = LastTurn::default();
    if let Some(message) = request.messages.iter().rev().find(|m| m.role == Role::User) {
        for t in message.texts() {
            let parts = instruction::split(t);
            let from = text.words.len();
            let first = head(parts.instruction, LAST_HEAD);
            text.read(first, Kind::Word);
            text.read(
                tail(&parts.instruction[first.len()..], LAST_TAIL),
                Kind::Word,
            );
            text.read(parts.closing, Kind::Word);
            for (n, found) in last
                .concepts
                .iter_mut()
                .zip(lexicon::count(&text.words[from..]))
            {
                *n += found;
            }
            last.long_words += long_words(&text.words[from..]);
            text.read(head(parts.material, MATERIAL_HEAD), Kind::Material);
            last.material_bytes += parts.material.len();
            let asked = if parts.closing.is_empty() {
                parts.instruction
            } else {
                parts.closing
            };
            last.question |= asked.trim_end().ends_with('?');
        }
    }
    last.instruction_words = text.last_words - before;
    let dense = dense(&s, last);
    let (text, words) = text.finish();
    Features { dense, text, words }
}

/// Words of [`LONG_WORD`] letters or more: specialist vocabulary tends to be
/// long ("linearizability", "contraindicated") where everyday words are not.
fn long_words(words: &str) -> usize {
    words
        .split(' ')
        .filter(|w| w.chars().count() >= LONG_WORD && w.chars().all(char::is_alphabetic))
        .count()
}

fn head(t: &str, n: usize) -> &str {
    let mut end = n.min(t.len());
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    &t[..end]
}

fn tail(t: &str, n: usize) -> &str {
    let mut start = t.len().saturating_sub(n);
    while !t.is_char_boundary(start) {
        start += 1;
    }
    &t[start..]
}

/// Where an FNV-1a hash of nothing starts.
pub(super) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues the FNV-1a hash `h` over `bytes`: stable across platforms and
/// releases, which the shipped model's slots and the held-out split rely on.
pub(super) fn fnv1a(h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A text feature's slot: FNV-1a over the kind and the bytes.
fn slot(kind: Kind, text: &str) -> u32 {
    let h = fnv1a(
        FNV_START,
        std::iter::once(kind.prefix()).chain(text.bytes()),
    );
    (h >> (64 - HASH_BITS)) as u32
}

/// Writes the word at `start` of `words` as a number: all digits become
/// `<num>`, and so do the digits before a unit of at most three letters
/// (`10k`, `3tb`, `500ms`, `10x` → `<num>k`, `<num>tb`, …), so a scale or a
/// size reads the same whatever its figure.
fn number_with_unit(words: &mut String, start: usize) {
    let word = &words.as_bytes()[start..];
    let digits = word.iter().take_while(|b| b.is_ascii_digit()).count();
    let unit = &word[digits..];
    if digits > 0 && unit.len() <= MAX_UNIT && unit.iter().all(u8::is_ascii_lowercase) {
        words.replace_range(start..start + digits, NUMBER);
    }
}

struct Text {
    words: String,
    /// Distinct features in the order first seen.
    found: Vec<(u32, Kind, u32, u32)>,
    /// One bit per slot: seen already. Taken from [`SEEN`] and given back
    /// cleared, so a request costs no 32 KiB allocation.
    seen: Vec<u64>,
    last_words: usize,
}

thread_local! {
    /// Each thread's cleared bitset of slots, reused by every reading.
    static SEEN: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Default for Text {
    fn default() -> Self {
        let mut seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
        seen.resize((1 << HASH_BITS) / 64, 0);
        Text {
            words: String::new(),
            found: Vec::new(),
            seen,
            last_words: 0,
        }
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        for (slot, ..) in &self.found {
            self.seen[*slot as usize / 64] = 0;
        }
        let seen = std::mem::take(&mut self.seen);
        SEEN.with(|s| *s.borrow_mut() = seen);
    }
}

impl Text {
    fn add(&mut self, kind: Kind, start: usize, end: usize) {
        let slot = slot(kind, &self.words[start..end]);
        let (cell, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if self.seen[cell] & bit == 0 {
            self.seen[cell] |= bit;
            self.found.push((slot, kind, start as u32, end as u32));
        }
    }

    /// Reads `t` as instruction (`Kind::Word`: words, stems, pairs, letters)
    /// or as material (`Kind::Material`: words only).
    fn read(&mut self, t: &str, kind: Kind) {
        let mut previous = None;
        let mut chars = t.chars().peekable();
        while chars.peek().is_some() {
            let start = self.words.len();
            for c in chars.by_ref() {
                if c.is_ascii_alphanumeric() {
                    self.words.push(c.to_ascii_lowercase());
                } else if !c.is_ascii() && c.is_alphanumeric() {
                    self.words.extend(c.to_lowercase());
                } else if self.words.len() > start {
                    break;
                }
            }
            if self.words.len() == start {
                break;
            }
            number_with_unit(&mut self.words, start);
            if kind == Kind::Material {
                let end = self.words.len();
                self.add(Kind::Material, start, end);
            } else {
                self.word(start, previous);
                previous = Some(start);
            }
            self.words.push(' ');
        }
    }

    fn word(&mut self, start: usize, previous: Option<usize>) {
        let end = self.words.len();
        self.last_words += 1;
        self.add(Kind::Word, start, end);
        if let Some((cut, _)) = self.words[start..end].char_indices().nth(STEM) {
            self.add(Kind::Stem, start, start + cut);
        }
        if let Some(previous) = previous {
            self.add(Kind::Pair, previous, end);
        }
        // Letter runs: fours in long Latin words, pairs in other scripts.
        let word = &self.words[start..end];
        if word.starts_with(NUMBER) {
            return;
        }
        if word.is_ascii() {
            if word.len() < 5 {
                return;
            }
            for at in (start..=end - 4).take(LETTER_RUNS) {
                self.add(Kind::Letters, at, at + 4);
            }
        } else {
            let mut bounds = [0usize; LETTER_RUNS + 2];
            let mut n = 0;
            for (i, _) in word.char_indices().take(LETTER_RUNS + 1) {
                bounds[n] = start + i;
                n += 1;
            }
            bounds[n] = word.char_indices().nth(n).map_or(end, |(i, _)| start + i);
            for w in bounds[..=n].windows(3) {
                self.add(Kind::Letters, w[0], w[2]);
            }
        }
    }

    fn finish(mut self) -> (Vec<TextFeature>, String) {
        let value = 1.0 / (self.found.len().max(1) as f32).powf(0.25);
        let text = self
            .found
            .iter()
            .copied()
            .map(|(slot, kind, start, end)| TextFeature {
                slot,
                value,
                kind,
                at: start..end,
            })
            .collect();
        (text, std::mem::take(&mut self.words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn features(text: &str) -> Features {
        read(
            &serde_json::from_value(
                json!({"model": "auto", "messages": [{"role": "user", "content": text}]}),
            )
            .unwrap(),
        )
    }

    fn texts(f: &Features) -> Vec<&str> {
        f.text.iter().map(|t| f.name(t)).collect()
    }

    #[test]
    fn words_stems_pairs_and_numbers() {
        let f = features("Optimise the 2 queries, optimise!");
        let t = texts(&f);
        for expected in [
            "optimise",
            "optim",
            "optimise the",
            "<num>",
            "<num> queries",
            "queri",
        ] {
            assert!(t.contains(&expected), "{expected} in {t:?}");
        }
        assert_eq!(
            t.iter().filter(|w| **w == "optimise").count(),
            1,
            "once each"
        );
        let expected = 1.0 / (f.text.len() as f32).powf(0.25);
        assert!(
            f.text.iter().all(|t| t.value == expected),
            "one over the fourth root"
        );
        assert!(
            !texts(&f).iter().any(|t| t.contains('≥')),
            "dense features give no ranges: {:?}",
            texts(&f)
        );
        assert!(!texts(&f).contains(&"num>"), "numbers give no letter runs");
        let at = |name| DENSE.iter().position(|n| *n == name).unwrap();
        assert_eq!(f.dense[at("instruction_words")], (1.0f32 + 5.0 / 8.0).ln());
        assert_eq!(f.dense[at("question")], 0.0);
        let long = features("Is this linearizable? Check the serialization and concurrency");
        assert_eq!(
            long.dense[at("long_words")],
            4.0f32.ln(),
            "three of 9+ letters"
        );
        assert_eq!(long.dense[at("long_word_share")], 3.0 / 8.0);
        let quoted =
            features("Is this review positive? 'The race condition handling was excellent.'");
        assert!(texts(&quoted).contains(&"race"), "material words are kept");
        assert!(
            !texts(&quoted).contains(&"race condition"),
            "but not paired"
        );
        assert_eq!(quoted.dense[at("question")], 1.0);
        assert!(quoted.dense[at("material_bytes")] > 0.0);
    }

    #[test]
    fn numbers_with_a_short_unit_read_as_their_unit() {
        let t = features("Shard 10k tenants over 3TB, p99 under 500ms at 10x load; an h100 has 80gb, 1000000 rows, 64bits");
        let t = texts(&t);
        for expected in [
            "<num>k",
            "<num>tb",
            "<num>ms",
            "<num>x load",
            "<num>gb",
            "<num> rows",
            "p99",
            "h100",
            "64bits",
        ] {
            assert!(t.contains(&expected), "{expected} in {t:?}");
        }
        for absent in ["10k", "3tb", "500ms", "num>k"] {
            assert!(!t.contains(&absent), "{absent} in {t:?}");
        }
        let at = |name| DENSE.iter().position(|n| *n == name).unwrap();
        let f = features("Plan for 10k writes a second on 3tb");
        assert!(f.dense[at("concept_scale")] > 0.0, "units count as scale");
    }

    #[test]
    fn non_latin_runs_give_letter_pairs_and_cuts_respect_characters() {
        let f = features("分散データベース");
        assert!(texts(&f).contains(&"分散"), "{:?}", texts(&f));
        let long = "é".repeat(5000);
        assert!(!features(&long).text.is_empty());
        let same = features("Write a function with tests");
        assert_eq!(
            same,
            features("Write a function with tests"),
            "deterministic"
        );
    }
}
