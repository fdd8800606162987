//! The labelled evaluation of `model: "auto"`: conversations written for
//! this project (`services/gateway/eval/auto_routing.jsonl`), each with the
//! tier a careful engineer would pick, scored and compared.
//!
//! Each line is `{"id", "category", "label", "request"}`, the request
//! without `model`. A text may hold `{{doc:N}}`, which stands for N
//! paragraphs of a filler report, so long-context cases stay readable.

use std::fmt;

use catalog::Tier;
use openai::ChatRequest;
use serde::Deserialize;
use serde_json::Value;

use super::{decide, AutoConfig};

/// The shipped evaluation set.
pub const SHIPPED: &str = include_str!("../../eval/auto_routing.jsonl");

const PARAGRAPH: &str = "The operations team reviewed throughput, incident counts and \
customer feedback for the period. Volumes grew in line with the forecast, two minor \
incidents were resolved within their targets, and the backlog of maintenance tasks was \
reduced. The next period focuses on capacity planning, vendor renewals and the rollout \
of the updated onboarding checklist across all regional offices.";

/// One labelled conversation.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub category: String,
    pub label: Tier,
    pub request: ChatRequest,
}

#[derive(Deserialize)]
struct Line {
    id: String,
    category: String,
    label: String,
    request: Value,
}

fn expand(value: &mut Value) {
    match value {
        Value::String(text) => {
            while let Some(start) = text.find("{{doc:") {
                let Some(len) = text[start..].find("}}") else {
                    break;
                };
                let n: usize = text[start + 6..start + len].parse().unwrap_or(0);
                let doc: Vec<String> = (1..=n)
                    .map(|i| format!("Section {i}. {PARAGRAPH}"))
                    .collect();
                text.replace_range(start..start + len + 2, &doc.join("\n\n"));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(expand),
        Value::Object(map) => map.values_mut().for_each(expand),
        _ => {}
    }
}

/// Reads a JSONL set; a bad line is an error naming it.
pub fn load(text: &str) -> Result<Vec<Case>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let at = |e: String| format!("line {}: {e}", n + 1);
            let line: Line = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let label = Tier::parse(&line.label)
                .ok_or_else(|| at(format!("unknown tier `{}`", line.label)))?;
            let mut request = line.request;
            expand(&mut request);
            if let Some(object) = request.as_object_mut() {
                object.insert("model".into(), Value::String(super::AUTO.into()));
            }
            let request = serde_json::from_value(request).map_err(|e| at(e.to_string()))?;
            Ok(Case {
                id: line.id,
                category: line.category,
                label,
                request,
            })
        })
        .collect()
}

fn rank(tier: Tier) -> usize {
    match tier {
        Tier::Economy => 0,
        Tier::Standard => 1,
        Tier::Premium => 2,
    }
}

/// How the scorer did on a set.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `confusion[label][chosen]`, tiers in economy, standard, premium order.
    pub confusion: [[usize; 3]; 3],
    /// Cases that went wrong: id, category, label, chosen tier, score.
    pub misses: Vec<(String, String, Tier, Tier, u8)>,
}

impl Report {
    /// Cases in the set.
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    /// Cases whose chosen tier is the label.
    pub fn correct(&self) -> usize {
        (0..3).map(|i| self.confusion[i][i]).sum()
    }

    fn share(&self, n: usize) -> f64 {
        n as f64 / self.total().max(1) as f64
    }

    /// Share routed to the labelled tier.
    pub fn accuracy(&self) -> f64 {
        self.share(self.correct())
    }

    /// Share routed to a cheaper tier than labelled.
    pub fn under_routed(&self) -> f64 {
        self.share(self.confusion[1][0] + self.confusion[2][0] + self.confusion[2][1])
    }

    /// Share labelled premium and routed to economy.
    pub fn under_routed_by_two(&self) -> f64 {
        self.share(self.confusion[2][0])
    }

    /// Share routed to a dearer tier than labelled.
    pub fn over_routed(&self) -> f64 {
        self.share(self.confusion[0][1] + self.confusion[0][2] + self.confusion[1][2])
    }
}

/// Scores every case.
pub fn evaluate(cases: &[Case], config: &AutoConfig) -> Report {
    let mut report = Report::default();
    for case in cases {
        let decision = decide(&case.request, config);
        report.confusion[rank(case.label)][rank(decision.tier)] += 1;
        if decision.tier != case.label {
            report.misses.push((
                case.id.clone(),
                case.category.clone(),
                case.label,
                decision.tier,
                decision.score,
            ));
        }
    }
    report
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        writeln!(
            f,
            "{} conversations: exact tier {}/{} = {}",
            self.total(),
            self.correct(),
            self.total(),
            pct(self.accuracy())
        )?;
        writeln!(
            f,
            "under-routed {} (premium → economy {}), over-routed {}",
            pct(self.under_routed()),
            pct(self.under_routed_by_two()),
            pct(self.over_routed())
        )?;
        writeln!(f, "\nlabel \\ chosen   economy  standard  premium")?;
        for (tier, row) in Tier::ALL.iter().zip(self.confusion) {
            writeln!(
                f,
                "{:<16} {:>7}  {:>8}  {:>7}",
                tier.as_str(),
                row[0],
                row[1],
                row[2]
            )?;
        }
        if !self.misses.is_empty() {
            writeln!(f, "\nmisses:")?;
            for (id, category, label, chosen, score) in &self.misses {
                writeln!(
                    f,
                    "  {id:<18} {category:<16} {label} → {chosen} (score {score})"
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_expand_and_bad_lines_are_named() {
        let cases = load(r#"{"id": "a", "category": "c", "label": "standard", "request": {"messages": [{"role": "user", "content": "Read:\n{{doc:3}}"}]}}"#).unwrap();
        let text = cases[0].request.messages[0]
            .texts()
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(text.matches("Section ").count(), 3);
        assert_eq!(cases[0].request.model, "auto");
        let bad =
            load("{\"id\": \"a\", \"category\": \"c\", \"label\": \"cheap\", \"request\": {}}")
                .unwrap_err();
        assert!(bad.contains("line 1") && bad.contains("cheap"), "{bad}");
    }

    #[test]
    fn the_shipped_set_meets_its_targets() {
        let cases = load(SHIPPED).expect("the shipped set loads");
        assert!(cases.len() >= 150, "{} cases", cases.len());
        let report = evaluate(&cases, &AutoConfig::default());
        assert!(report.accuracy() >= 0.85, "{report}");
        assert!(report.under_routed_by_two() <= 0.05, "{report}");
    }
}
