//! The score's shape: a 0–100 number, the tier it maps to under
//! `[gateway.auto]`, and each feature's share of it.
//!
//! The learned model ([`super::model`]) places its tier cuts at 40 and 70.
//! The thresholds here default to those cuts; lowering them trades money
//! for fewer under-routed conversations, and so do `under_penalty` (both
//! cuts) and `premium_guard` (economy only).

use std::borrow::Cow;
use std::path::PathBuf;

use catalog::Tier;
use serde::{Deserialize, Serialize};

/// `model: "auto"`'s settings (the `[gateway.auto]` config section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoConfig {
    /// Scores from here up are standard (default 40, the model's cut).
    pub standard_from: u8,
    /// Scores from here up are premium (default 70, the model's cut).
    pub premium_from: u8,
    /// How many times worse an under-routed conversation is than an
    /// over-routed one (default 1.25, the least that keeps left-out
    /// under-routing by one tier within 8%; 1 is the model's own cuts);
    /// above 1 moves conversations near a cut to the dearer tier (see
    /// [`super::model`]).
    pub under_penalty: f64,
    /// Score points below premium within which the premium question keeps a
    /// conversation out of economy (default 13): sending premium work to
    /// economy is the costliest miss; 0 turns the guard off.
    pub premium_guard: f64,
    /// A model file to use instead of the shipped one; reloaded on change
    /// or SIGHUP, like the catalog.
    pub model: Option<PathBuf>,
}

impl Default for AutoConfig {
    fn default() -> Self {
        AutoConfig {
            standard_from: 40,
            premium_from: 70,
            under_penalty: 1.25,
            premium_guard: 13.0,
            model: None,
        }
    }
}

impl AutoConfig {
    /// Refuses settings that cannot mean anything.
    pub fn check(&self) -> Result<(), super::ModelError> {
        if !(self.under_penalty.is_finite() && self.under_penalty > 0.0) {
            return Err(super::ModelError::Setting(format!(
                "under_penalty must be a positive number, not {}",
                self.under_penalty
            )));
        }
        if !(self.premium_guard.is_finite() && (0.0..=100.0).contains(&self.premium_guard)) {
            return Err(super::ModelError::Setting(format!(
                "premium_guard must be between 0 and 100 points, not {}",
                self.premium_guard
            )));
        }
        if self.standard_from > self.premium_from {
            return Err(super::ModelError::Setting(format!(
                "standard_from ({}) must not be above premium_from ({})",
                self.standard_from, self.premium_from
            )));
        }
        Ok(())
    }

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

/// The share that holds a score at an edge of its tier's range (39, 69, 0
/// or 100) when no margin lands in the range: not a feature, but listed so
/// that base plus the shares is the score.
pub const HELD: &str = "held_at_tier_edge";

/// One feature's share of the score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// The feature: a signal's name, `word "…"`, `stem "…"`, `words "… …"`,
    /// `letters "…"`, `other_words` for the text features not named, or
    /// [`HELD`].
    pub signal: Cow<'static, str>,
    /// The feature's value (a signal's log-scaled count; for `other_words`,
    /// how many text features it sums; for [`HELD`], the score held to).
    pub value: f64,
    /// Points added (negative: removed).
    pub points: f64,
}

/// Which of the model's two questions set the score (see [`super::model`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// "Does it need at least standard?": the score is `40 + 10·a`.
    Standard,
    /// "Does it need premium?": the score is `70 + 10·b` (premium, or a
    /// standard conversation the standard question is too sure of).
    Premium,
    /// The premium question, kept out of economy by the guard: the score is
    /// `40 + premium_guard + 10·b`.
    PremiumGuard,
}

impl Question {
    /// Its name on `/v1/router/explain`.
    pub fn name(self) -> &'static str {
        match self {
            Question::Standard => "standard",
            Question::Premium => "premium",
            Question::PremiumGuard => "premium_guard",
        }
    }

    /// Which of a weight pair this question reads.
    pub fn weights(self) -> usize {
        match self {
            Question::Standard => 0,
            Question::Premium | Question::PremiumGuard => 1,
        }
    }
}

impl Serialize for Question {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The score, its tier and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// 0–100: `base` plus every contribution, rounded and clamped.
    pub score: u8,
    /// The tier the score maps to.
    pub tier: Tier,
    /// The question whose margin is the score.
    pub question: Question,
    /// The score of a conversation with no features.
    pub base: f64,
    /// Every feature that moved the score, largest first, and [`HELD`]
    /// when the score was held.
    pub contributions: Vec<Contribution>,
}

impl Explanation {
    /// The `n` largest shares that are features, not the hold: the reasons
    /// a usage event keeps for the decision.
    pub fn reasons(&self, n: usize) -> impl Iterator<Item = &Contribution> {
        self.contributions
            .iter()
            .filter(|c| c.signal != HELD)
            .take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_configurable() {
        let config = AutoConfig {
            standard_from: 10,
            premium_from: 50,
            ..AutoConfig::default()
        };
        assert_eq!(config.tier(9), Tier::Economy);
        assert_eq!(config.tier(10), Tier::Standard);
        assert_eq!(config.tier(65), Tier::Premium);
        assert_eq!(AutoConfig::default().tier(39), Tier::Economy);
        assert_eq!(AutoConfig::default().tier(40), Tier::Standard);
        assert_eq!(AutoConfig::default().tier(70), Tier::Premium);
        let refusal = |config: AutoConfig| config.check().unwrap_err().to_string();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let under_penalty = AutoConfig {
                under_penalty: bad,
                ..AutoConfig::default()
            };
            assert!(refusal(under_penalty).contains("under_penalty"));
        }
        for bad in [-1.0, 101.0, f64::NAN] {
            let premium_guard = AutoConfig {
                premium_guard: bad,
                ..AutoConfig::default()
            };
            assert!(refusal(premium_guard).contains("premium_guard"));
        }
        let crossed = AutoConfig {
            standard_from: 80,
            ..AutoConfig::default()
        };
        assert!(crossed.check().is_err());
        assert!(AutoConfig::default().check().is_ok());
    }
}
