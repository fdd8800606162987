//! `prefer`: how candidates within a tier are ordered.
//!
//! | prefer     | first tried                                                         |
//! |------------|---------------------------------------------------------------------|
//! | `cheap`    | lowest blended price (3 input : 1 output tokens; free models = 0)   |
//! | `fast`     | lowest expected latency: time to first token + output at its speed, |
//! |            | both observed (EWMA, see [`crate::health::latency`])                 |
//! | `quality`  | highest quality score                                                |
//! | `coding`   | highest coding score, then quality                                   |
//! | `balanced` | highest 0.5·quality + 0.3·cheapness + 0.2·speed (default)           |
//!
//! Ties go to the cheaper model, then to the model id, so orders are stable.
//! Embedding models are ranked the same way ([`rank`]) on their input price,
//! with quality standing in for coding.

use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::Arc;

use catalog::{EmbeddingModel, Model};

use crate::health::latency::Speed;

/// Output tokens assumed for latency estimates when the request sets no limit.
const REFERENCE_OUTPUT_TOKENS: u64 = 256;
/// Added to blended prices (in nano-dollars per million tokens, i.e. $0.05/M) so free models do not divide by zero.
const PRICE_FLOOR_NANOS: f64 = 50_000_000.0;

/// A client's routing preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefer {
    Cheap,
    Fast,
    #[default]
    Balanced,
    Quality,
    Coding,
}

impl Prefer {
    /// The name a request gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Cheap => "cheap",
            Prefer::Fast => "fast",
            Prefer::Balanced => "balanced",
            Prefer::Quality => "quality",
            Prefer::Coding => "coding",
        }
    }
}

impl FromStr for Prefer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cheap" => Ok(Prefer::Cheap),
            "fast" => Ok(Prefer::Fast),
            "balanced" => Ok(Prefer::Balanced),
            "quality" => Ok(Prefer::Quality),
            "coding" => Ok(Prefer::Coding),
            other => Err(format!(
                "Invalid value for `prefer`: `{}`. Use one of cheap, fast, balanced, quality, coding.",
                crate::error::echo(other)
            )),
        }
    }
}

/// What the orderings need to know of a model.
pub trait Ranked {
    /// The catalog id (the last tie-break).
    fn id(&self) -> &str;
    /// What an account pays per million tokens, in nano-dollars (0 when free).
    fn price(&self) -> i64;
    /// General quality, 0-100.
    fn quality(&self) -> u8;
    /// Coding score, 0-100.
    fn coding(&self) -> u8;
}

/// Chat models are priced on a blended 3 input : 1 output mix.
impl Ranked for Model {
    fn id(&self) -> &str {
        &self.id
    }
    fn price(&self) -> i64 {
        if self.free {
            0
        } else {
            self.blended_price().nanos()
        }
    }
    fn quality(&self) -> u8 {
        self.quality
    }
    fn coding(&self) -> u8 {
        self.coding
    }
}

/// Embedding models are priced on input alone and have no coding score.
impl Ranked for EmbeddingModel {
    fn id(&self) -> &str {
        &self.id
    }
    fn price(&self) -> i64 {
        self.input_per_mtok.0.nanos()
    }
    fn quality(&self) -> u8 {
        self.quality
    }
    fn coding(&self) -> u8 {
        self.quality
    }
}

/// Orders chat `candidates` best first for `prefer`; `speed` says how fast
/// each model is believed to be now.
pub fn order(
    prefer: Prefer,
    candidates: &mut [Arc<Model>],
    output_tokens: Option<u32>,
    speed: impl Fn(&Model) -> Speed,
) {
    let out = output_tokens.map_or(REFERENCE_OUTPUT_TOKENS, u64::from);
    rank(prefer, candidates, |m| speed(m).expected_ms(out));
}

/// Orders `candidates` best first for `prefer`, given each one's expected
/// milliseconds to answer.
pub fn rank<M: Ranked>(prefer: Prefer, candidates: &mut [Arc<M>], expected_ms: impl Fn(&M) -> f64) {
    let price = |m: &M| m.price();
    let tie = |a: &M, b: &M| price(a).cmp(&price(b)).then_with(|| a.id().cmp(b.id()));
    match prefer {
        Prefer::Cheap => candidates.sort_by(|a, b| {
            price(a)
                .cmp(&price(b))
                .then(b.quality().cmp(&a.quality()))
                .then_with(|| a.id().cmp(b.id()))
        }),
        Prefer::Fast => candidates.sort_by(|a, b| {
            expected_ms(a)
                .total_cmp(&expected_ms(b))
                .then_with(|| tie(a, b))
        }),
        Prefer::Quality => {
            candidates.sort_by(|a, b| b.quality().cmp(&a.quality()).then_with(|| tie(a, b)))
        }
        Prefer::Coding => candidates.sort_by(|a, b| {
            b.coding()
                .cmp(&a.coding())
                .then(b.quality().cmp(&a.quality()))
                .then_with(|| tie(a, b))
        }),
        Prefer::Balanced => {
            let cheapest = candidates.iter().map(|m| price(m)).min().unwrap_or(0) as f64;
            let fastest = candidates
                .iter()
                .map(|m| expected_ms(m))
                .fold(f64::INFINITY, f64::min);
            let score = |m: &M| {
                let quality = f64::from(m.quality()) / 100.0;
                let cheapness =
                    (cheapest + PRICE_FLOOR_NANOS) / (price(m) as f64 + PRICE_FLOOR_NANOS);
                let quickness = fastest / expected_ms(m);
                0.5 * quality + 0.3 * cheapness + 0.2 * quickness
            };
            candidates.sort_by(|a, b| {
                score(b)
                    .partial_cmp(&score(a))
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| tie(a, b))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalog::{Catalog, Tier};

    fn ordered(prefer: Prefer, tier: Tier) -> Vec<String> {
        let catalog = Catalog::builtin();
        let mut models: Vec<_> = catalog.tier(tier).cloned().collect();
        order(prefer, &mut models, None, Speed::of_catalog);
        models.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn each_preference_puts_its_best_first() {
        // Free models cost nothing: the best free model leads `cheap`.
        assert_eq!(
            ordered(Prefer::Cheap, Tier::Economy)[0],
            "qwen-3-235b-a22b-instruct-2507"
        );
        assert_eq!(ordered(Prefer::Fast, Tier::Economy)[0], "llama3.1-8b");
        assert_eq!(
            ordered(Prefer::Quality, Tier::Premium)[0],
            "claude-opus-4-7"
        );
        assert_eq!(ordered(Prefer::Coding, Tier::Premium)[0], "claude-opus-4-7");
        assert_eq!(ordered(Prefer::Coding, Tier::Standard)[0], "gpt-5.3-codex");
        assert!("nope"
            .parse::<Prefer>()
            .unwrap_err()
            .contains("cheap, fast"));
    }

    #[test]
    fn orders_are_total_and_monotone() {
        let catalog = Catalog::builtin();
        for tier in Tier::ALL {
            let models: Vec<_> = catalog.tier(tier).cloned().collect();
            let mut cheap = models.clone();
            order(Prefer::Cheap, &mut cheap, None, Speed::of_catalog);
            assert!(cheap.windows(2).all(|w| w[0].price() <= w[1].price()));
            let mut quality = models.clone();
            order(Prefer::Quality, &mut quality, None, Speed::of_catalog);
            assert!(quality.windows(2).all(|w| w[0].quality >= w[1].quality));
            let mut fast = models.clone();
            order(Prefer::Fast, &mut fast, Some(500), Speed::of_catalog);
            assert!(fast
                .windows(2)
                .all(|w| Speed::of_catalog(&w[0]).expected_ms(500)
                    <= Speed::of_catalog(&w[1]).expected_ms(500)));
            let mut balanced = models.clone();
            order(Prefer::Balanced, &mut balanced, None, Speed::of_catalog);
            assert_eq!(balanced.len(), models.len());
        }
    }
}
