//! From [`Signals`] to a 0–100 score, a tier and the reasons.
//!
//! Every signal adds (or removes) points, each capped, on top of a base of
//! 20; the sum is clamped to 0–100. The weights:
//!
//! | signal | points |
//! |---|---|
//! | system prompt | +1 per 250 bytes, up to +6; expert role +8 |
//! | output-format demands | +3 each, up to +6 |
//! | fenced code | +8 for the first block, +3 per further one, up to +14; +1 per 300 bytes inside, up to +14 |
//! | code-like lines outside fences | +1 per 2 lines, up to +8 |
//! | stack traces / compiler errors | +12 each, up to +18 |
//! | conversation size | +1 per 3 KB, up to +20; +1 per 2 turns beyond 2, up to +6 |
//! | tools offered / tool turns in the history | +6 / +4 each, up to +16 |
//! | reasoning markers (prove, trade-offs, design, root cause, ...) | +10 each, up to +36 |
//! | maths (theorem, integral, LaTeX, ∑ ...) | +9 each, up to +27 |
//! | numbered / "must" constraints | +3 each, up to +15 |
//! | simple-task markers (translate, summarise, extract, greet, ...) | −12 each, down to −24 |
//! | requested output | ≥ 4,000 tokens +8, ≥ 16,000 +14, ≤ 256 −6 |
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

/// Scores `s` and explains it.
pub fn explain(s: &Signals, config: &AutoConfig) -> Explanation {
    let substantive = s.code_blocks + s.code_lines + s.tools + s.tool_turns + s.reasoning + s.math;
    let output = match s.max_tokens {
        Some(n) if n >= 16_000 => 14,
        Some(n) if n >= 4_000 => 8,
        Some(n) if n <= 256 => -6,
        _ => 0,
    };
    let rows: [(&'static str, f64, i32); 19] = [
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
        (
            "code_blocks",
            s.code_blocks as f64,
            if s.code_blocks == 0 {
                0
            } else {
                (5 + 3 * s.code_blocks as i32).min(14)
            },
        ),
        (
            "code_bytes",
            s.code_bytes as f64,
            per(s.code_bytes, 300, 14),
        ),
        ("code_lines", s.code_lines as f64, per(s.code_lines, 2, 8)),
        (
            "stack_traces",
            s.stack_traces as f64,
            each(s.stack_traces, 12, 18),
        ),
        (
            "conversation_bytes",
            s.total_bytes as f64,
            per(s.total_bytes, 3_000, 20),
        ),
        (
            "turns",
            s.turns as f64,
            per(s.turns.saturating_sub(2), 2, 6),
        ),
        (
            "tools_offered",
            s.tools as f64,
            if s.tools > 0 { 6 } else { 0 },
        ),
        ("tool_turns", s.tool_turns as f64, each(s.tool_turns, 4, 16)),
        (
            "reasoning_markers",
            s.reasoning as f64,
            each(s.reasoning, 10, 36),
        ),
        ("math", s.math as f64, each(s.math, 9, 27)),
        (
            "constraints",
            s.constraints as f64,
            each(s.constraints, 3, 15),
        ),
        (
            "simple_task_markers",
            s.simple as f64,
            each(s.simple, -12, -24),
        ),
        (
            "requested_output_tokens",
            f64::from(s.max_tokens.unwrap_or(0)),
            output,
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
        assert_eq!(hard.score, 100, "20 + 36 + 27 + 18 clamps at 100");
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
        assert_eq!(many.score, 56);
        let config = AutoConfig {
            standard_from: 10,
            premium_from: 50,
        };
        assert_eq!(explain(&Signals::default(), &config).tier, Tier::Standard);
        assert_eq!(config.tier(56), Tier::Premium);
        assert_eq!(AutoConfig::default().tier(39), Tier::Economy);
        assert_eq!(AutoConfig::default().tier(40), Tier::Standard);
    }
}
