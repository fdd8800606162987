//! The learned scorer: a linear model over [`features`](super::features),
//! trained offline by `modelrouter train-auto` ([`super::train`]) and shipped
//! as `shared/catalog/auto_model.json`, next to the catalog and reloaded like it.
//!
//! The model gives a conversation a value `z` (the sum of each feature's
//! weight times its value). Two cuts on `z` separate the tiers; the trainer
//! places them (see [`super::train`]). The score shown to users is `z`
//! rescaled so the cuts fall at 40 and 70: economy below 40, premium from 70,
//! and every feature's share of the score is its weight times its value,
//! rescaled the same way, so the shares add up to the score.
//!
//! **Asymmetric safety.** Sending a conversation to a cheaper tier than it
//! needs costs quality; sending it to a dearer one costs money. With an
//! under-routing penalty `r` (`[gateway.auto] under_penalty`: an
//! under-routed conversation counts `r` times an over-routed one), the
//! cheapest expected decision at each cut is to move it down by `ln r` in
//! `z`; the base score rises by as many points, so every conversation near
//! a cut goes to the dearer side.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::features::{self, Features, DENSE, HASH_BITS};
use super::score::{AutoConfig, Contribution, Explanation};

/// The first line of defence against a file that is not a model.
pub const FORMAT: &str = "modelrouter-auto-model/1";

/// The shipped model.
const SHIPPED: &str = include_str!("../../../../shared/catalog/auto_model.json");

/// Where the cuts fall on the 0–100 score.
pub const STANDARD_AT: f64 = 40.0;
pub const PREMIUM_AT: f64 = 70.0;

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
    #[error("the auto model's format is `{0}`, this gateway reads `{FORMAT}`")]
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

/// The file's shape.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    feature_version: u32,
    hash_bits: u32,
    trained: Provenance,
    /// Where standard and premium start, in `z`.
    cuts: [f32; 2],
    dense: Vec<(String, f32)>,
    /// Text slots with a weight, ascending.
    text: Vec<(u32, f32)>,
}

/// A loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub trained: Provenance,
    /// Where standard and premium start, in `z`.
    pub cuts: [f32; 2],
    pub dense: [f32; DENSE.len()],
    /// One weight per text slot.
    pub text: Vec<f32>,
}

fn finite(what: &str, x: f32) -> Result<f32, ModelError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ModelError::Invalid(format!("{what} is {x}")))
    }
}

impl Model {
    /// A model of zeros with the given cuts (the trainer's starting point).
    pub fn empty(cuts: [f32; 2]) -> Self {
        Model {
            trained: Provenance::default(),
            cuts,
            dense: [0.0; DENSE.len()],
            text: vec![0.0; 1 << HASH_BITS],
        }
    }

    /// Reads a model file's text, checking that it fits this gateway's features.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let file: File = serde_json::from_str(text)?;
        if file.format != FORMAT {
            return Err(ModelError::Format(file.format));
        }
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
        let [standard, premium] = file.cuts;
        if finite("a cut", standard)? >= finite("a cut", premium)? {
            return Err(ModelError::Invalid(format!(
                "the standard cut {standard} must be below the premium cut {premium}"
            )));
        }
        let mut model = Model::empty(file.cuts);
        model.trained = file.trained;
        for (i, (name, w)) in file.dense.iter().enumerate() {
            model.dense[i] = finite(name, *w)?;
        }
        for (slot, w) in file.text {
            let cell = model.text.get_mut(slot as usize).ok_or_else(|| {
                ModelError::Invalid(format!("text slot {slot} is beyond 2^{HASH_BITS}"))
            })?;
            *cell = finite("a text weight", w)?;
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
                .filter(|(_, w)| **w != 0.0)
                .map(|(slot, w)| (slot, *w))
                .collect(),
        };
        let mut text = serde_json::to_string(&file).expect("a model serialises");
        text.push('\n');
        text
    }

    /// Points per unit of `z` on the 0–100 score, and the score of `z = 0`
    /// once the under-routing penalty `r` has moved the cuts down by `ln r`.
    fn scale(&self, under_penalty: f64) -> (f64, f64) {
        let [c1, c2] = self.cuts.map(f64::from);
        let k = (PREMIUM_AT - STANDARD_AT) / (c2 - c1);
        (k, STANDARD_AT - k * (c1 - under_penalty.ln()))
    }

    /// The score of `f`, its tier under `config`, and what moved it.
    pub fn explain(&self, f: &Features, config: &AutoConfig) -> Explanation {
        let (k, base) = self.scale(config.under_penalty);
        let mut contributions: Vec<Contribution> = DENSE
            .iter()
            .zip(self.dense.iter().zip(f.dense))
            .filter(|(_, (w, x))| **w != 0.0 && *x != 0.0)
            .map(|(name, (w, x))| Contribution {
                signal: Cow::Borrowed(*name),
                value: f64::from(x),
                points: k * f64::from(w * x),
            })
            .collect();
        let mut words: Vec<(f64, &features::TextFeature)> = f
            .text
            .iter()
            .map(|t| (k * f64::from(self.text[t.slot as usize] * t.value), t))
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
        contributions.sort_by(|a, b| b.points.abs().total_cmp(&a.points.abs()));
        let raw = base + contributions.iter().map(|c| c.points).sum::<f64>();
        let score = raw.round().clamp(0.0, 100.0) as u8;
        Explanation {
            score,
            tier: config.tier(score),
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
        let cuts = edited(|f| f["cuts"] = json!([2.0, 1.0]));
        assert!(refusal(&cuts).contains("must be below"));
        let slot = edited(|f| f["text"] = json!([[1u64 << HASH_BITS, 0.5]]));
        assert!(refusal(&slot).contains("beyond"));
        let extra = edited(|f| f["surprise"] = json!(1));
        assert!(refusal(&extra).contains("unknown field"));
    }

    #[test]
    fn contributions_add_up_to_the_score_and_scoring_is_deterministic() {
        let model = Model::shipped();
        let config = AutoConfig::default();
        for text in [
            "hi",
            "Write a Python function that merges intervals, with tests.",
            "Prove that there are infinitely many primes of the form 4k+3, rigorously.",
            &"Summarise this report. ".repeat(2_000),
        ] {
            let e = model.explain(&read(&request(text)), &config);
            let raw = e.base + e.contributions.iter().map(|c| c.points).sum::<f64>();
            assert_eq!(f64::from(e.score), raw.round().clamp(0.0, 100.0), "{e:?}");
            assert!(e.contributions.len() <= DENSE.len() + NAMED_WORDS + 1);
            assert!(e
                .contributions
                .windows(2)
                .all(|w| w[0].points.abs() >= w[1].points.abs()));
            assert_eq!(e, model.explain(&read(&request(text)), &config));
        }
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
        moved.cuts = [moved.cuts[0] - 1.0, moved.cuts[1]];
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
