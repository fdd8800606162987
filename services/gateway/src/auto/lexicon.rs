//! Concepts that cut across kinds of task: how many words or phrases of
//! each group an instruction holds. They give the learned model evidence it
//! can carry from one family to another (a word about scale in a data task
//! and in a design task), where a single word seen in one family would not.
//! The groups say what a phrase is about; the model learns what it is worth.
//!
//! Phrases are matched on whole words of the normalised instruction
//! (lowercase, single spaces, numbers as `<num>`; see [`super::features`]).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The groups, in the order of [`count`]'s result.
pub const GROUPS: [&str; 11] = [
    "concept_rigour",
    "concept_scale",
    "concept_failure",
    "concept_stakes",
    "concept_design",
    "concept_speed",
    "concept_build",
    "concept_explain",
    "concept_brevity",
    "concept_lookup",
    "concept_transform",
];

const PHRASES: [&[&str]; 11] = [
    &[
        "prove",
        "proof",
        "proofs",
        "show that",
        "invariant",
        "invariants",
        "guarantee",
        "guarantees",
        "correctness",
        "sound",
        "soundness",
        "formal",
        "formally",
        "verify",
        "derive",
        "derivation",
        "justify",
        "rigorous",
        "rigorously",
        "lemma",
        "theorem",
        "counterexample",
        "optimal",
        "optimally",
        "bound",
        "bounds",
        "irrational",
        "induction",
    ],
    &[
        "million",
        "millions",
        "billion",
        "billions",
        "thousands",
        "per second",
        "p99",
        "p95",
        "tail latency",
        "throughput",
        "production",
        "cluster",
        "clusters",
        "regions",
        "multi region",
        "globally",
        "at scale",
        "10x",
        "tb",
        "gb",
        "<num> k",
        "<num>k",
        "petabytes",
        "terabytes",
        "fleet",
        "tenants",
        "multi tenant",
    ],
    &[
        "consistency",
        "consistent",
        "inconsistent",
        "exactly once",
        "at least once",
        "idempotent",
        "idempotency",
        "race",
        "races",
        "deadlock",
        "deadlocks",
        "failover",
        "partition",
        "partitions",
        "concurrent",
        "concurrency",
        "corruption",
        "lost",
        "loses",
        "duplicate",
        "duplicates",
        "twice",
        "ordering",
        "split brain",
        "leak",
        "leaks",
        "intermittent",
        "flaky",
        "sometimes",
        "rarely",
        "once a week",
        "outage",
        "cascade",
    ],
    &[
        "legal",
        "gdpr",
        "liability",
        "patient",
        "patients",
        "dose",
        "dosage",
        "tax",
        "taxes",
        "compliance",
        "regulator",
        "regulatory",
        "contract",
        "audit",
        "breach",
        "attack",
        "attacker",
        "exploit",
        "vulnerability",
        "threat",
        "lawsuit",
        "jurisdiction",
        "interaction",
        "interactions",
        "diagnosis",
        "differential",
        "valuation",
        "hedging",
        "fiduciary",
        "encryption",
        "cryptographic",
    ],
    &[
        "design",
        "architect",
        "architecture",
        "trade off",
        "trade offs",
        "tradeoff",
        "tradeoffs",
        "strategy",
        "roadmap",
        "migration",
        "migrate",
        "redesign",
        "plan",
        "sequence",
        "phases",
        "end to end",
        "system",
        "systems",
        "scalable",
        "components",
        "evaluate",
        "compare",
        "weigh",
        "critically",
    ],
    &[
        "optimise",
        "optimize",
        "optimisation",
        "optimization",
        "faster",
        "speed up",
        "slow",
        "latency",
        "memory",
        "performance",
        "efficient",
        "efficiently",
        "minimise",
        "minimize",
        "maximise",
        "maximize",
        "allocation",
        "allocations",
        "cache",
        "simd",
        "profile",
        "bottleneck",
        "complexity",
    ],
    &[
        "write",
        "implement",
        "build",
        "create",
        "code",
        "function",
        "script",
        "class",
        "tests",
        "test",
        "unit tests",
        "endpoint",
        "program",
        "app",
        "cli",
        "refactor",
        "port",
        "fix",
        "debug",
        "component",
        "module",
        "library",
        "api",
        "query",
    ],
    &[
        "explain",
        "explanation",
        "how does",
        "how do",
        "why",
        "why does",
        "difference",
        "differences",
        "walk me through",
        "describe",
        "what happens",
        "how it works",
        "in depth",
        "intuitively",
        "with examples",
        "with an example",
        "teach",
        "understand",
    ],
    &[
        "one sentence",
        "one line",
        "one word",
        "in a sentence",
        "briefly",
        "brief",
        "short",
        "quick",
        "quickly",
        "just",
        "only",
        "yes or no",
        "tl dr",
        "tldr",
        "headline",
        "two sentences",
        "three sentences",
        "in <num> words",
        "one liner",
        "a sentence",
        "nothing else",
        "simple",
        "simply",
    ],
    &[
        "what is",
        "what s",
        "who",
        "when",
        "where",
        "which",
        "how many",
        "how much",
        "capital",
        "name the",
        "define",
        "stand for",
        "mean",
        "meaning",
        "is it",
        "fact",
    ],
    &[
        "translate",
        "translation",
        "convert",
        "rephrase",
        "rewrite",
        "typo",
        "typos",
        "capitalise",
        "capitalize",
        "extract",
        "pull out",
        "classify",
        "tag",
        "label",
        "sort",
        "list",
        "format",
        "spell",
        "correct",
        "proofread",
        "shorten",
        "summarise",
        "summarize",
        "summary",
        "count",
        "reply",
        "caption",
    ],
];

/// Phrases of up to [`LONGEST`] words, by their text.
static PHRASE_GROUPS: LazyLock<HashMap<&'static str, usize>> = LazyLock::new(|| {
    PHRASES
        .iter()
        .enumerate()
        .flat_map(|(g, list)| list.iter().map(move |p| (*p, g)))
        .collect()
});

const LONGEST: usize = 3;

/// How many phrases of each group `words` (normalised, single spaces) holds;
/// at each word the longest phrase starting there counts, and the next
/// phrase starts after it.
pub fn count(words: &str) -> [usize; GROUPS.len()] {
    let phrases = &*PHRASE_GROUPS;
    let mut counts = [0; GROUPS.len()];
    let bounds: Vec<(usize, usize)> = words
        .split(' ')
        .scan(0usize, |at, w| {
            let start = *at;
            *at += w.len() + 1;
            Some((start, start + w.len()))
        })
        .filter(|(s, e)| e > s)
        .collect();
    let mut i = 0;
    while i < bounds.len() {
        let longest = (1..=LONGEST.min(bounds.len() - i)).rev().find_map(|n| {
            let text = &words[bounds[i].0..bounds[i + n - 1].1];
            phrases.get(text).map(|g| (n, *g))
        });
        match longest {
            Some((n, group)) => {
                counts[group] += 1;
                i += n;
            }
            None => i += 1,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_match_whole_words_back_to_back() {
        let c = count("prove the invariant holds at scale and explain why ");
        let at = |name| GROUPS.iter().position(|g| *g == name).unwrap();
        assert_eq!(c[at("concept_rigour")], 2, "{c:?}");
        assert_eq!(c[at("concept_scale")], 1);
        assert_eq!(c[at("concept_explain")], 2, "explain, why");
        assert_eq!(count("uncountable approved ")[at("concept_rigour")], 0);
        assert_eq!(count("in <num> words please")[at("concept_brevity")], 1);
        assert_eq!(
            count("what is it")[at("concept_lookup")],
            1,
            "longest first, no overlap"
        );
    }
}
