//! The learned scorer: two linear models over [`features`](super::features),
//! trained offline by `modelrouter train-auto` ([`super::train`]) and shipped
//! as `shared/catalog/auto_model.json`, next to the catalog and reloaded like it.
//!
//! The model asks two questions of a conversation, each answered by its own
//! weights: **does it need at least standard?** (margin `a`) and **does it
//! need premium?** (margin `b`). A margin is the sum of each feature's
//! weight times its value, minus the question's cut: the log-odds of "yes".
//! Two questions rather than one scale, because what makes work worth more
//! than economy ("a function, with tests") is not what makes it premium
//! ("prove the bound"): one scale had to push both up together.
//!
//! The 0–100 score shown to users is one margin, rescaled to 10 points a
//! unit: `70 + 10·b` when the premium question says yes; otherwise
//! `40 + 10·a` (or `40 + premium_guard + 10·b` when that is higher, see
//! below), economy below 40; and where that would reach 70 for a standard
//! conversation, `70 + 10·b` if it lands in the standard range. Every
//! feature's share of the score is its weight times its value in that
//! margin, times 10. Where no margin lands in the tier's range (a
//! conversation both questions are sure is standard scores 69), the score
//! is held at the range's edge and one more share, [`HELD`], says by how
//! much, so base plus the shares is the score in every case.
//!
//! **Asymmetric safety.** Sending a conversation to a cheaper tier than it
//! needs costs quality; sending it to a dearer one costs money. With an
//! under-routing penalty `r` (`[gateway.auto] under_penalty`: an
//! under-routed conversation counts `r` times an over-routed one), the
//! cheapest expected decision is to move both cuts down by `ln r`. And a
//! conversation the premium question is not far from calling premium
//! (within `[gateway.auto] premium_guard` points) is never sent to economy:
//! premium work routed to economy is the miss users notice first.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::features::{self, Features, TextFeature, DENSE, HASH_BITS};
use super::score::{AutoConfig, Contribution, Explanation, Question, HELD};

/// The first line of defence against a file that is not a model.
pub const FORMAT: &str = "modelrouter-auto-model/2";

/// The shipped model.
const SHIPPED: &str = include_str!("../../../../shared/catalog/auto_model.json");

/// Where the cuts fall on the 0–100 score.
pub const STANDARD_AT: f64 = 40.0;
pub const PREMIUM_AT: f64 = 70.0;

/// Score points per unit of a margin (log-odds).
pub const POINTS_PER_LOGIT: f64 = 10.0;

/// Text features named one by one in an explanation; the rest are summed.
const NAMED_WORDS: usize = 8;

/// Why a model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read the auto model `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the auto model is not valid JSON of the expected shape: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the auto model's format is `{0}`, this gateway reads `{FORMAT}`; retrain it with `modelrouter train-auto`")]
    Format(String),
    #[error("the auto model was trained on features version {found} (hash bits {bits}), this gateway computes version {} (hash bits {HASH_BITS}); retrain it with `modelrouter train-auto`", features::VERSION)]
    Features { found: u32, bits: u32 },
    #[error("the auto model's dense features differ from this gateway's: {0}")]
    Dense(String),
    #[error("the auto model is inconsistent: {0}")]
    Invalid(String),
    #[error("[gateway.auto]: {0}")]
    Setting(String),
}

/// How a model was trained, kept in its file for whoever reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Conversations it was fitted on, and their families.
    pub cases: usize,
    pub families: usize,
    /// The L2 penalty and the optimisation steps used.
    pub l2: f64,
    pub steps: usize,
}

/// The file's shape. Each weight is a pair: the standard question's, then
/// the premium question's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    feature_version: u32,
    hash_bits: u32,
    trained: Provenance,
    /// Each question's cut, in its margin: standard, premium.
    cuts: [f32; 2],
    dense: Vec<(String, [f32; 2])>,
    /// Text slots with a weight, ascending.
    text: Vec<(u32, [f32; 2])>,
}

/// A loaded model. Every weight is a pair, `[standard, premium]`: one per
/// question.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub trained: Provenance,
    /// Each question's cut: its margin is the weighted sum minus the cut.
    pub cuts: [f32; 2],
    pub dense: [[f32; 2]; DENSE.len()],
    /// One weight pair per text slot.
    pub text: Vec<[f32; 2]>,
}

fn finite(what: &str, x: f32) -> Result<f32, ModelError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ModelError::Invalid(format!("{what} is {x}")))
    }
}

fn finite_pair(what: &str, [a, b]: [f32; 2]) -> Result<[f32; 2], ModelError> {
    Ok([finite(what, a)?, finite(what, b)?])
}

impl Model {
    /// A model of zeros with the given cuts (the trainer's starting point).
    pub fn empty(cuts: [f32; 2]) -> Self {
        Model {
            trained: Provenance::default(),
            cuts,
            dense: [[0.0; 2]; DENSE.len()],
            text: vec![[0.0; 2]; 1 << HASH_BITS],
        }
    }

    /// Reads a model file's text, checking that it fits this gateway's features.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let format = serde_json::from_str::<serde_json::Value>(text)?
            .get("format")
            .and_then(|f| f.as_str().map(str::to_owned));
        if let Some(format) = format.filter(|f| f != FORMAT) {
            return Err(ModelError::Format(format));
        }
        let file: File = serde_json::from_str(text)?;
        if file.feature_version != features::VERSION || file.hash_bits != HASH_BITS {
            return Err(ModelError::Features {
                found: file.feature_version,
                bits: file.hash_bits,
            });
        }
        let names: Vec<&str> = file.dense.iter().map(|(n, _)| n.as_str()).collect();
        if names != DENSE {
            return Err(ModelError::Dense(format!(
                "file has {names:?}, gateway has {DENSE:?}"
            )));
        }
        let mut model = Model::empty(finite_pair("a cut", file.cuts)?);
        model.trained = file.trained;
        for (i, (name, w)) in file.dense.iter().enumerate() {
            model.dense[i] = finite_pair(name, *w)?;
        }
        for (slot, w) in file.text {
            let cell = model.text.get_mut(slot as usize).ok_or_else(|| {
                ModelError::Invalid(format!("text slot {slot} is beyond 2^{HASH_BITS}"))
            })?;
            *cell = finite_pair("a text weight", w)?;
        }
        Ok(model)
    }

    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The model shipped in the binary.
    pub fn shipped() -> Self {
        Self::parse(SHIPPED).expect("the shipped auto model loads (tested)")
    }

    /// The file text of this model.
    pub fn to_json(&self) -> String {
        let file = File {
            format: FORMAT.into(),
            feature_version: features::VERSION,
            hash_bits: HASH_BITS,
            trained: self.trained.clone(),
            cuts: self.cuts,
            dense: DENSE
                .iter()
                .zip(self.dense)
                .map(|(n, w)| ((*n).to_owned(), w))
                .collect(),
            text: (0u32..)
                .zip(&self.text)
                .filter(|(_, w)| **w != [0.0; 2])
                .map(|(slot, w)| (slot, *w))
                .collect(),
        };
        let mut text = serde_json::to_string(&file).expect("a model serialises");
        text.push('\n');
        text
    }

    /// The two margins' weighted sums, before the cuts.
    fn sums(&self, f: &Features) -> [f64; 2] {
        let mut sums = [0.0f64; 2];
        let weighted = self
            .dense
            .iter()
            .zip(f.dense)
            .map(|(w, x)| (*w, x))
            .chain(f.text.iter().map(|t| (self.text[t.slot as usize], t.value)));
        for (w, x) in weighted {
            sums[0] += f64::from(w[0] * x);
            sums[1] += f64::from(w[1] * x);
        }
        sums
    }

    /// The question that sets the score, the score of a conversation with
    /// no features under it, and the range the score is held to (its tier's).
    fn decide(&self, sums: [f64; 2], config: &AutoConfig) -> (Question, f64, [f64; 2]) {
        let k = POINTS_PER_LOGIT;
        let shift = config.under_penalty.ln();
        // Each margin in points, and what it is with no features.
        let empty = self.cuts.map(|c| k * (shift - f64::from(c)));
        let a = sums[0] * k + empty[0];
        let b = sums[1] * k + empty[1];
        if b >= 0.0 {
            return (
                Question::Premium,
                PREMIUM_AT + empty[1],
                [PREMIUM_AT, 100.0],
            );
        }
        let guarded = b + config.premium_guard;
        let (question, base, margin) = if a >= guarded {
            (Question::Standard, STANDARD_AT + empty[0], a)
        } else {
            let base = STANDARD_AT + config.premium_guard + empty[1];
            (Question::PremiumGuard, base, guarded)
        };
        if margin < 0.0 {
            return (question, base, [0.0, STANDARD_AT - 1.0]);
        }
        let standard = [STANDARD_AT, PREMIUM_AT - 1.0];
        // Standard: the score is the margin that lands in the tier's range,
        // so the shares add up to it; the premium question's when the
        // standard question is too sure (a ≥ 30 points) and it is not.
        if STANDARD_AT + margin >= PREMIUM_AT && PREMIUM_AT + b >= STANDARD_AT {
            return (Question::Premium, PREMIUM_AT + empty[1], standard);
        }
        (question, base, standard)
    }

    /// The score of `f`, its tier under `config`, and what moved it.
    pub fn explain(&self, f: &Features, config: &AutoConfig) -> Explanation {
        let (question, base, [low, high]) = self.decide(self.sums(f), config);
        let q = question.weights();
        let points = |w: [f32; 2], x: f32| POINTS_PER_LOGIT * f64::from(w[q] * x);
        let mut contributions: Vec<Contribution> = DENSE
            .iter()
            .zip(self.dense.iter().zip(f.dense))
            .filter(|(_, (w, x))| w[q] != 0.0 && *x != 0.0)
            .map(|(name, (w, x))| Contribution {
                signal: Cow::Borrowed(*name),
                value: f64::from(x),
                points: points(*w, x),
            })
            .collect();
        let mut words: Vec<(f64, &TextFeature)> = f
            .text
            .iter()
            .map(|t| (points(self.text[t.slot as usize], t.value), t))
            .filter(|(p, _)| *p != 0.0)
            .collect();
        // Only the heaviest few are named: select them, do not sort them all.
        let heaviest = |a: &(f64, _), b: &(f64, _)| b.0.abs().total_cmp(&a.0.abs());
        if words.len() > NAMED_WORDS {
            words.select_nth_unstable_by(NAMED_WORDS, heaviest);
        }
        let named = NAMED_WORDS.min(words.len());
        words[..named].sort_by(heaviest);
        for (points, t) in words.iter().take(NAMED_WORDS) {
            contributions.push(Contribution {
                signal: Cow::Owned(format!("{} \"{}\"", t.kind.name(), f.name(t))),
                value: f64::from(t.value),
                points: *points,
            });
        }
        let rest = words.iter().skip(NAMED_WORDS);
        let (n, points) = rest.fold((0, 0.0), |(n, sum), (p, _)| (n + 1, sum + p));
        if n > 0 {
            contributions.push(Contribution {
                signal: Cow::Borrowed("other_words"),
                value: f64::from(n),
                points,
            });
        }
        let raw = base + contributions.iter().map(|c| c.points).sum::<f64>();
        let held = raw.round().clamp(low, high);
        if held != raw.round() {
            // No margin lands in the tier's range: say so, as a share, so
            // the shares still add up to the score.
            contributions.push(Contribution {
                signal: Cow::Borrowed(HELD),
                value: held,
                points: held - raw,
            });
        }
        contributions.sort_by(|a, b| b.points.abs().total_cmp(&a.points.abs()));
        let score = held as u8;
        Explanation {
            score,
            tier: config.tier(score),
            question,
            base,
            contributions,
        }
    }
}

/// The model in force, swapped whole when its file changes or on SIGHUP;
/// a file that does not load is refused and the previous model stays.
pub struct ModelHandle {
    current: ArcSwap<Model>,
    source: Option<PathBuf>,
}

impl ModelHandle {
    /// Loads `source` if given, else the shipped model.
    pub fn open(source: Option<PathBuf>) -> Result<Arc<Self>, ModelError> {
        let model = match &source {
            Some(path) => Model::load(path)?,
            None => Model::shipped(),
        };
        Ok(Arc::new(ModelHandle {
            current: ArcSwap::from_pointee(model),
            source,
        }))
    }

    /// The model as of now.
    pub fn snapshot(&self) -> Arc<Model> {
        self.current.load_full()
    }

    /// Re-reads the file; on error the current model stays in force.
    pub fn reload(&self) -> Result<(), ModelError> {
        if let Some(path) = &self.source {
            self.current.store(Arc::new(Model::load(path)?));
        }
        Ok(())
    }

    /// Reloads on a change of the file or SIGHUP (see [`catalog::watch`]).
    pub fn spawn_watcher(self: &Arc<Self>, poll: Duration) {
        let Some(path) = self.source.clone() else {
            return;
        };
        let handle = Arc::clone(self);
        catalog::watch(path, poll, "auto model", move || {
            handle.reload().map_err(|e| e.to_string())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auto::features::read;
    use catalog::Tier;
    use serde_json::{json, Value};

    fn request(text: &str) -> openai::ChatRequest {
        serde_json::from_value(json!({"model": "auto", "messages": [
            {"role": "system", "content": "You are a careful assistant."},
            {"role": "user", "content": text}
        ]}))
        .unwrap()
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> String {
        let mut file: Value = serde_json::from_str(SHIPPED).unwrap();
        edit(&mut file);
        file.to_string()
    }

    fn refusal(text: &str) -> String {
        Model::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_model_loads_and_round_trips() {
        let model = Model::shipped();
        assert!(model.trained.cases >= 800, "{:?}", model.trained);
        assert_eq!(Model::parse(&model.to_json()).unwrap(), model);
    }

    #[test]
    fn corrupt_or_mismatched_files_are_refused_with_the_reason() {
        assert!(refusal(&SHIPPED[..SHIPPED.len() / 2]).contains("not valid JSON"));
        assert!(refusal("{}").contains("missing field"));
        let other = edited(|f| f["format"] = json!("something-else/9"));
        assert!(refusal(&other).contains("format is `something-else/9`"));
        let version = edited(|f| f["feature_version"] = json!(features::VERSION + 1));
        assert!(
            refusal(&version).contains("retrain it"),
            "{}",
            refusal(&version)
        );
        let bits = edited(|f| f["hash_bits"] = json!(HASH_BITS - 1));
        assert!(refusal(&bits).contains("hash bits"));
        let dense = edited(|f| f["dense"][0][0] = json!("renamed"));
        assert!(refusal(&dense).contains("dense features differ"));
        let fewer = edited(|f| {
            f["dense"].as_array_mut().unwrap().pop();
        });
        assert!(refusal(&fewer).contains("dense features differ"));
        let v1 = edited(|f| {
            f["format"] = json!("modelrouter-auto-model/1");
            f["dense"][0][1] = json!(0.5);
        });
        assert!(refusal(&v1).contains("retrain it"), "{}", refusal(&v1));
        let one = edited(|f| f["dense"][0][1] = json!(0.5));
        assert!(
            refusal(&one).contains("not valid JSON"),
            "a weight is a pair"
        );
        let cuts = edited(|f| f["cuts"] = json!([1.0, 1e39]));
        assert!(
            refusal(&cuts).contains("a cut is inf"),
            "{}",
            refusal(&cuts)
        );
        let slot = edited(|f| f["text"] = json!([[1u64 << HASH_BITS, [0.5, 0.5]]]));
        assert!(refusal(&slot).contains("beyond"));
        let extra = edited(|f| f["surprise"] = json!(1));
        assert!(refusal(&extra).contains("unknown field"));
    }

    /// The tier's range of scores under the default thresholds.
    fn range(tier: Tier) -> (f64, f64) {
        match tier {
            Tier::Economy => (0.0, STANDARD_AT - 1.0),
            Tier::Standard => (STANDARD_AT, PREMIUM_AT - 1.0),
            Tier::Premium => (PREMIUM_AT, 100.0),
        }
    }

    #[test]
    fn contributions_add_up_to_the_score_and_scoring_is_deterministic() {
        let model = Model::shipped();
        let config = AutoConfig::default();
        let mut questions = Vec::new();
        for text in [
            "hi",
            "What's the capital of France?",
            "Write a Python function that merges intervals, with tests.",
            "Explain how TLS certificate chains are verified.",
            "Prove that there are infinitely many primes of the form 4k+3, rigorously.",
            "Is this Go code race-free? Prove it or show an interleaving.",
            &"Summarise this report. ".repeat(2_000),
        ] {
            let e = model.explain(&read(&request(text)), &config);
            let raw = e.base + e.contributions.iter().map(|c| c.points).sum::<f64>();
            let (low, high) = range(e.tier);
            assert_eq!(f64::from(e.score), raw.round(), "{e:?}");
            assert!((low..=high).contains(&raw.round()), "{e:?}");
            questions.push(e.question);
            assert!(e.contributions.len() <= DENSE.len() + NAMED_WORDS + 2);
            assert!(e
                .contributions
                .windows(2)
                .all(|w| w[0].points.abs() >= w[1].points.abs()));
            assert_eq!(e, model.explain(&read(&request(text)), &config));
        }
        assert!(questions.contains(&Question::Standard), "{questions:?}");
        assert!(questions.contains(&Question::Premium), "{questions:?}");
    }

    /// A score held at 100 lists the hold among its shares, so they add up,
    /// but the reasons a usage event keeps are features only.
    #[test]
    fn a_held_score_lists_its_hold_and_keeps_it_out_of_the_reasons() {
        let model = Model::shipped();
        let text = "Prove that there are infinitely many primes of the form 4k+3, \
            rigorously, then formalise the proof in Lean and analyse its complexity.";
        let e = model.explain(&read(&request(text)), &AutoConfig::default());
        let hold = e.contributions.iter().find(|c| c.signal == HELD);
        let hold = hold.unwrap_or_else(|| panic!("a sure premium is held at 100: {e:?}"));
        assert_eq!((e.score, hold.value), (100, 100.0), "{e:?}");
        let reasons: Vec<_> = e.reasons(8).collect();
        assert_eq!(reasons.len(), 8, "{e:?}");
        assert!(reasons.iter().all(|c| c.signal != HELD));
        let features = e.contributions.iter().filter(|c| c.signal != HELD);
        assert_eq!(reasons, features.take(8).collect::<Vec<_>>());
    }

    /// A model of one dense weight pair, to place a conversation's margins.
    fn margins(a: f32, b: f32) -> (Model, Features) {
        let mut model = Model::empty([0.0, 0.0]);
        let f = read(&request("hello"));
        let (i, x) = (0..DENSE.len())
            .map(|i| (i, f.dense[i]))
            .find(|(_, x)| *x != 0.0)
            .unwrap();
        model.dense[i] = [a / x / 10.0, b / x / 10.0];
        (model, f)
    }

    #[test]
    fn the_premium_guard_keeps_near_premium_work_out_of_economy() {
        // The guard alone: no under-routing penalty moving the cuts.
        let config = AutoConfig {
            premium_guard: 12.0,
            under_penalty: 1.0,
            ..AutoConfig::default()
        };
        // Standard says no (a = -20 points), premium says "nearly" (b = -5).
        let (model, f) = margins(-20.0, -5.0);
        let e = model.explain(&f, &config);
        assert_eq!(
            (e.tier, e.question),
            (Tier::Standard, Question::PremiumGuard)
        );
        assert_eq!(e.score, 47, "40 + guard 12 - 5: {e:?}");
        let off = AutoConfig {
            premium_guard: 0.0,
            ..config.clone()
        };
        let e = model.explain(&f, &off);
        assert_eq!(
            (e.tier, e.question, e.score),
            (Tier::Economy, Question::PremiumGuard, 35)
        );
        // Far from premium (b = -40, -28 with the guard): the standard
        // question decides.
        let (model, f) = margins(-20.0, -40.0);
        let e = model.explain(&f, &config);
        assert_eq!(
            (e.tier, e.question, e.score),
            (Tier::Economy, Question::Standard, 20)
        );
        // Sure of standard, sure it is not premium: held to the tier's top.
        let (model, f) = margins(50.0, -40.0);
        let e = model.explain(&f, &config);
        assert_eq!(
            (e.tier, e.question, e.score),
            (Tier::Standard, Question::Standard, 69)
        );
        // Standard sure, premium not far off: the premium margin is the
        // score, in the standard range.
        let (model, f) = margins(50.0, -20.0);
        let e = model.explain(&f, &config);
        assert_eq!(
            (e.tier, e.question, e.score),
            (Tier::Standard, Question::Premium, 50)
        );
        let (model, f) = margins(-50.0, 3.0);
        let e = model.explain(&f, &config);
        assert_eq!(
            (e.tier, e.question, e.score),
            (Tier::Premium, Question::Premium, 73)
        );
    }

    #[test]
    fn a_reload_that_fails_keeps_the_model_in_force() {
        let path = std::env::temp_dir().join(format!("auto-model-{}.json", std::process::id()));
        let mut moved = Model::shipped();
        std::fs::write(&path, moved.to_json()).unwrap();
        let handle = ModelHandle::open(Some(path.clone())).unwrap();
        let before = handle.snapshot();
        for bad in [
            "",
            "{\"format\":",
            &edited(|f| f["feature_version"] = json!(0)),
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(handle.reload().is_err(), "{bad:.40}");
            assert_eq!(handle.snapshot(), before, "the previous model stays");
        }
        moved.cuts = [moved.cuts[0] - 1.0, moved.cuts[1] - 1.0];
        std::fs::write(&path, moved.to_json()).unwrap();
        handle.reload().unwrap();
        assert_eq!(*handle.snapshot(), moved, "a good file is taken");
        std::fs::remove_file(&path).unwrap();
        assert!(
            ModelHandle::open(Some(path)).is_err(),
            "a missing file at start is an error"
        );
    }
}
