//! Fitting the auto model: two logistic regressions over
//! [`features`](super::features), offline, deterministic.
//!
//! Tiers are ordered, and the model asks one question per step up:
//! "at least standard?" and "premium?". Each question is its own logistic
//! regression (weights and a cut) on the same features: what lifts work
//! above economy is not what makes it premium, so one shared scale would
//! have to trade the two off. Each fit minimises its logistic loss, the
//! yes and no sides weighted by their inverse frequency (so the corpus's
//! mix does not set the prior), plus an L2 penalty on the weights, by
//! full-batch Adam for a fixed number of steps: the same corpus always
//! gives the same model.
//! A cut is where its question's two answers are equally likely; moving
//! them for asymmetric safety is a setting of the gateway
//! ([`AutoConfig::under_penalty`](super::score::AutoConfig::under_penalty),
//! [`AutoConfig::premium_guard`](super::score::AutoConfig::premium_guard)).

use catalog::Tier;

use super::features::{Features, DENSE, HASH_BITS};
use super::model::{Model, Provenance};

/// How a model is fitted.
#[derive(Debug, Clone)]
pub struct Options {
    /// L2 penalty on every weight, per conversation.
    pub l2: f64,
    /// Full-batch optimisation steps.
    pub steps: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            l2: 0.001,
            steps: 800,
        }
    }
}

/// One labelled conversation, read.
pub struct Example<'a> {
    pub features: &'a Features,
    pub label: Tier,
}

fn rank(tier: Tier) -> usize {
    match tier {
        Tier::Economy => 0,
        Tier::Standard => 1,
        Tier::Premium => 2,
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Adam's state for one block of parameters.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
}

const RATE: f64 = 0.05;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;

impl Adam {
    fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn step(&mut self, i: usize, param: &mut f64, grad: f64, t: i32) {
        self.m[i] = BETA1 * self.m[i] + (1.0 - BETA1) * grad;
        self.v[i] = BETA2 * self.v[i] + (1.0 - BETA2) * grad * grad;
        let m = self.m[i] / (1.0 - BETA1.powi(t));
        let v = self.v[i] / (1.0 - BETA2.powi(t));
        *param -= RATE * m / (v.sqrt() + 1e-8);
    }
}

/// The examples as the fit reads them: text slots in use renumbered densely.
struct Design<'a> {
    examples: &'a [Example<'a>],
    slots: Vec<u32>,
    rows: Vec<Vec<(usize, f64)>>,
}

impl<'a> Design<'a> {
    fn new(examples: &'a [Example<'a>]) -> Self {
        let mut slots: Vec<u32> = examples
            .iter()
            .flat_map(|e| e.features.text.iter().map(|t| t.slot))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        let index = |slot: u32| slots.binary_search(&slot).unwrap_or_default();
        let rows = examples
            .iter()
            .map(|e| {
                e.features
                    .text
                    .iter()
                    .map(|t| (index(t.slot), f64::from(t.value)))
                    .collect()
            })
            .collect();
        Design {
            examples,
            slots,
            rows,
        }
    }
}

/// One question's fit: its weights and its cut.
struct Fitted {
    dense: [f64; DENSE.len()],
    text: Vec<f64>,
    cut: f64,
}

/// Fits the logistic regression of "is the label above `below`?".
fn fit_question(design: &Design, below: usize, options: &Options) -> Fitted {
    let examples = design.examples;
    let n = examples.len().max(1) as f64;
    let yes: Vec<bool> = examples.iter().map(|e| rank(e.label) > below).collect();
    let ayes = yes.iter().filter(|y| **y).count();
    let side = |count: usize| {
        if count == 0 {
            0.0
        } else {
            n / (2.0 * count as f64)
        }
    };
    let weight = [side(examples.len() - ayes), side(ayes)];

    let mut dense = [0.0f64; DENSE.len()];
    let mut text = vec![0.0f64; design.slots.len()];
    let mut cut = 0.0f64;
    let (mut adam_dense, mut adam_text, mut adam_cut) = (
        Adam::new(DENSE.len()),
        Adam::new(design.slots.len()),
        Adam::new(1),
    );
    let mut grad_text = vec![0.0f64; design.slots.len()];
    for step in 1..=options.steps as i32 {
        let mut grad_dense = [0.0f64; DENSE.len()];
        grad_text.iter_mut().for_each(|g| *g = 0.0);
        let mut grad_cut = 0.0;
        for ((e, row), yes) in examples.iter().zip(&design.rows).zip(&yes) {
            let z = dense
                .iter()
                .zip(e.features.dense)
                .map(|(w, x)| w * f64::from(x))
                .sum::<f64>()
                + row.iter().map(|(i, x)| text[*i] * x).sum::<f64>();
            let target = if *yes { 1.0 } else { 0.0 };
            let g = weight[usize::from(*yes)] / n * (sigmoid(z - cut) - target);
            grad_cut -= g;
            for (gd, x) in grad_dense.iter_mut().zip(e.features.dense) {
                *gd += g * f64::from(x);
            }
            for (i, x) in row {
                grad_text[*i] += g * x;
            }
        }
        for (i, w) in dense.iter_mut().enumerate() {
            adam_dense.step(i, w, grad_dense[i] + 2.0 * options.l2 * *w, step);
        }
        for (i, w) in text.iter_mut().enumerate() {
            adam_text.step(i, w, grad_text[i] + 2.0 * options.l2 * *w, step);
        }
        adam_cut.step(0, &mut cut, grad_cut, step);
    }
    Fitted { dense, text, cut }
}

/// Fits a model to `examples`: the standard question, then the premium one.
pub fn fit(examples: &[Example], options: &Options) -> Model {
    let design = Design::new(examples);
    let questions = [0, 1].map(|below| fit_question(&design, below, options));
    let mut model = Model::empty(questions.each_ref().map(|q| q.cut as f32));
    for (q, fitted) in questions.iter().enumerate() {
        for (slot, w) in design.slots.iter().zip(&fitted.text) {
            model.text[*slot as usize][q] = *w as f32;
        }
        for (pair, w) in model.dense.iter_mut().zip(fitted.dense) {
            pair[q] = w as f32;
        }
    }
    model.trained = Provenance {
        cases: examples.len(),
        families: 0,
        l2: options.l2,
        steps: options.steps,
    };
    debug_assert!(model.text.len() == 1 << HASH_BITS);
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auto::features;
    use crate::auto::score::AutoConfig;
    use serde_json::json;

    fn read(text: &str) -> Features {
        features::read(
            &serde_json::from_value(
                json!({"model": "auto", "messages": [{"role": "user", "content": text}]}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn a_fit_separates_what_it_was_shown_and_is_deterministic() {
        let data = [
            ("hello there", Tier::Economy),
            ("thanks a lot", Tier::Economy),
            ("write a parser with tests", Tier::Standard),
            ("write a script with tests", Tier::Standard),
            ("prove the lemma rigorously", Tier::Premium),
            ("prove the theorem rigorously", Tier::Premium),
        ];
        let read: Vec<(Features, Tier)> = data.iter().map(|(t, l)| (read(t), *l)).collect();
        let examples: Vec<Example> = read
            .iter()
            .map(|(features, label)| Example {
                features,
                label: *label,
            })
            .collect();
        let options = Options::default();
        let model = fit(&examples, &options);
        for (f, label) in &read {
            assert_eq!(model.explain(f, &AutoConfig::default()).tier, *label);
        }
        assert_eq!(model, fit(&examples, &options), "same data, same model");
    }
}
