//! From [`Signals`] to a 0–100 score, a tier and the reasons.
//!
//! Every signal adds (or removes) points, each capped, on top of a base of
//! 20; the sum is clamped to 0–100. The weights:
//!
//! | signal | points |
//! |---|---|
//! | system prompt | +1 per 250 bytes, up to +6; expert role +8 |
//! | output-format demands | +3 each, up to +6 |
//! | fenced code | +12 for the first block, +4 per further one, up to +20; +1 per 200 bytes inside, up to +14 |
//! | code-like lines outside fences | +1 per 2 lines, up to +8 |
//! | stack traces / compiler errors | +20 each, up to +26 |
//! | conversation size | +1 per 4 KB below 16 KB; +20 from 16 KB, +28 from 32 KB, +34 from 64 KB |
//! | turns | +1 per 2 turns beyond 2, up to +6 |
//! | tools offered / tool turns in the history | +10 / +5 each, up to +20 |
//! | reasoning markers (trade-offs, design, root cause, consistency, ...) | +12 each, up to +45 |
//! | a proof asked for | +45 |
//! | maths (theorem, integral, prime, LaTeX, ∑ ...) | +9 each, up to +27 |
//! | technical terms (distinct: languages, APIs, tests, infrastructure) | +5 each, up to +25 |
//! | task verbs in the last turn (distinct: implement, design, plan, ...) | +4 each, up to +16 |
//! | numbered / "must" constraints | +3 each, up to +15 |
//! | simple-task markers (translate, summarise, extract, greet, ...) | −12 each, down to −24; −4 each, down to −8, on 16 KB or more |
//! | requested output | ≥ 1,000 tokens +6, ≥ 4,000 +10, ≥ 16,000 +16, ≤ 256 −6; ≥ 500 words asked in the text +16, ≥ 2,000 +26 |
//! | images | +6 each, up to +12 |
//! | non-English last turn | +3 (more than 30% non-ASCII letters) |
//! | a short last turn (< 60 bytes) with no code, tools or reasoning | −10 |
//!
//! The tier: economy below `standard_from` (default 40), premium from
//! `premium_from` (default 70), standard between.

use catalog::Tier;
use serde::{Deserialize, Serialize};

use super::signals::Signals;

/// Where the tiers start (the `[gateway.auto]` config section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoConfig {
    /// Scores from here up are standard (default 40).
    pub standard_from: u8,
    /// Scores from here up are premium (default 70).
    pub premium_from: u8,
}

impl Default for AutoConfig {
    fn default() -> Self {
        AutoConfig {
            standard_from: 40,
            premium_from: 70,
        }
    }
}

impl AutoConfig {
    /// The tier of `score`.
    pub fn tier(&self, score: u8) -> Tier {
        if score >= self.premium_from {
            Tier::Premium
        } else if score >= self.standard_from {
            Tier::Standard
        } else {
            Tier::Economy
        }
    }
}

/// One signal's share of the score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// The signal's name.
    pub signal: &'static str,
    /// What was counted (bytes, occurrences, ...).
    pub value: f64,
    /// Points added (negative: removed).
    pub points: i32,
}

/// The score, its tier and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// 0–100.
    pub score: u8,
    /// The tier the score maps to.
    pub tier: Tier,
    /// Every signal that moved the score, largest first.
    pub contributions: Vec<Contribution>,
}

const BASE: i32 = 20;

fn per(value: usize, unit: usize, cap: i32) -> i32 {
    ((value / unit.max(1)) as i32).min(cap)
}

fn each(value: usize, points: i32, cap: i32) -> i32 {
    (value as i32 * points).clamp(cap.min(0), cap.max(0))
}

fn size_points(bytes: usize) -> i32 {
    match bytes {
        b if b >= 64 << 10 => 34,
        b if b >= 32 << 10 => 28,
        b if b >= 16 << 10 => 20,
        b => (b >> 12) as i32,
    }
}

fn output_points(s: &Signals) -> i32 {
    let tokens = match s.max_tokens {
        Some(n) if n >= 16_000 => 16,
        Some(n) if n >= 4_000 => 10,
        Some(n) if n >= 1_000 => 6,
        Some(n) if n <= 256 => -6,
        _ => 0,
    };
    let words = match s.requested_words {
        w if w >= 2_000 => 26,
        w if w >= 500 => 16,
        _ => 0,
    };
    tokens.max(words)
}

/// Scores `s` and explains it.
pub fn explain(s: &Signals, config: &AutoConfig) -> Explanation {
    let substantive = s.code_blocks + s.code_lines + s.tools + s.tool_turns + s.reasoning + s.math;
    let long = s.total_bytes >= 16 << 10;
    let simple = if long {
        each(s.simple, -4, -8)
    } else {
        each(s.simple, -12, -24)
    };
    let code_blocks = if s.code_blocks == 0 {
        0
    } else {
        (8 + 4 * s.code_blocks as i32).min(20)
    };
    let rows: [(&'static str, f64, i32); 22] = [
        (
            "system_prompt_bytes",
            s.system_bytes as f64,
            per(s.system_bytes, 250, 6),
        ),
        (
            "expert_role",
            f64::from(u8::from(s.expert_role)),
            if s.expert_role { 8 } else { 0 },
        ),
        (
            "format_demands",
            s.format_demands as f64,
            each(s.format_demands, 3, 6),
        ),
        ("code_blocks", s.code_blocks as f64, code_blocks),
        (
            "code_bytes",
            s.code_bytes as f64,
            per(s.code_bytes, 200, 14),
        ),
        ("code_lines", s.code_lines as f64, per(s.code_lines, 2, 8)),
        (
            "stack_traces",
            s.stack_traces as f64,
            each(s.stack_traces, 20, 26),
        ),
        (
            "conversation_bytes",
            s.total_bytes as f64,
            size_points(s.total_bytes),
        ),
        (
            "turns",
            s.turns as f64,
            per(s.turns.saturating_sub(2), 2, 6),
        ),
        (
            "tools_offered",
            s.tools as f64,
            if s.tools > 0 { 10 } else { 0 },
        ),
        ("tool_turns", s.tool_turns as f64, each(s.tool_turns, 5, 20)),
        (
            "reasoning_markers",
            s.reasoning as f64,
            each(s.reasoning, 12, 45),
        ),
        (
            "proof",
            f64::from(u8::from(s.proof)),
            if s.proof { 45 } else { 0 },
        ),
        ("math", s.math as f64, each(s.math, 9, 27)),
        (
            "technical_terms",
            s.tech_terms as f64,
            each(s.tech_terms, 5, 25),
        ),
        ("task_verbs", s.tasks as f64, each(s.tasks, 4, 16)),
        (
            "constraints",
            s.constraints as f64,
            each(s.constraints, 3, 15),
        ),
        ("simple_task_markers", s.simple as f64, simple),
        (
            "requested_output",
            f64::from(s.max_tokens.unwrap_or(0)).max(s.requested_words as f64),
            output_points(s),
        ),
        ("images", s.images as f64, each(s.images, 6, 12)),
        (
            "non_english",
            s.non_ascii,
            if s.non_ascii > 0.3 { 3 } else { 0 },
        ),
        (
            "short_plain_request",
            s.last_user_bytes as f64,
            if s.last_user_bytes < 60 && substantive == 0 {
                -10
            } else {
                0
            },
        ),
    ];
    let mut contributions: Vec<Contribution> = rows
        .into_iter()
        .filter(|(_, _, points)| *points != 0)
        .map(|(signal, value, points)| Contribution {
            signal,
            value,
            points,
        })
        .collect();
    contributions.sort_by_key(|c| std::cmp::Reverse(c.points.abs()));
    let total = BASE + contributions.iter().map(|c| c.points).sum::<i32>();
    let score = total.clamp(0, 100) as u8;
    Explanation {
        score,
        tier: config.tier(score),
        contributions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(s: Signals) -> Explanation {
        explain(&s, &AutoConfig::default())
    }

    #[test]
    fn the_score_is_the_base_plus_every_contribution_clamped() {
        let plain = score(Signals {
            last_user_bytes: 100,
            ..Default::default()
        });
        assert_eq!(
            (plain.score, plain.tier, plain.contributions.len()),
            (20, Tier::Economy, 0)
        );
        let hard = score(Signals {
            reasoning: 5,
            math: 5,
            stack_traces: 3,
            last_user_bytes: 500,
            ..Default::default()
        });
        assert_eq!(hard.score, 100, "20 + 45 + 27 + 26 clamps at 100");
        assert_eq!(hard.tier, Tier::Premium);
        assert_eq!(hard.contributions[0].signal, "reasoning_markers");
        let greeting = score(Signals {
            simple: 1,
            last_user_bytes: 10,
            ..Default::default()
        });
        assert_eq!(greeting.score, 0, "20 - 12 - 10 clamps at 0");
    }

    #[test]
    fn caps_hold_and_thresholds_are_configurable() {
        let many = score(Signals {
            reasoning: 50,
            last_user_bytes: 500,
            ..Default::default()
        });
        assert_eq!(many.score, 65, "20 + the 45 cap");
        let config = AutoConfig {
            standard_from: 10,
            premium_from: 50,
        };
        assert_eq!(explain(&Signals::default(), &config).tier, Tier::Standard);
        assert_eq!(config.tier(65), Tier::Premium);
        assert_eq!(AutoConfig::default().tier(39), Tier::Economy);
        assert_eq!(AutoConfig::default().tier(40), Tier::Standard);
    }
}
