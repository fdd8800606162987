//! Measuring `model: "auto"` on conversations labelled by hand
//! (`services/gateway/eval/auto_routing.jsonl`; label rules in
//! `services/gateway/eval/LABELS.md`), honestly:
//!
//! - a fixed 20% of the set, chosen by a hash of each id, is **held out**:
//!   no fit and no choice of settings ever looks at it;
//! - **leave-one-family-out** cross-validation fits on all families of the
//!   other 80% but one and scores the family left out, for every family, so
//!   each figure comes from a model that never saw that kind of task;
//! - the **training** figure (the shipped model on the 80% it was fitted on)
//!   is shown beside them, to see how much of it is memory.
//!
//! Each line is `{"id", "family", "label", "request"}` (`category` is read
//! as `family`), the request without `model`. A text may hold `{{doc:N}}`,
//! which stands for N sections of a filler report, and `{{code:LANG:N}}`,
//! N functions of filler code in one fenced block (LANG: `js`, `go`, `rust`
//! or `python`), so cases with long material stay readable.

use std::collections::BTreeMap;
use std::fmt;

use catalog::{Catalog, Tier};
use money::{CostBuilder, Money, PricePerMTok};
use openai::ChatRequest;
use serde::Deserialize;
use serde_json::Value;

use super::features::{self, Features};
use super::model::Model;
use super::score::AutoConfig;
use super::train::{self, Example, Options};

/// The shipped evaluation set.
pub const SHIPPED: &str = include_str!("../../eval/auto_routing.jsonl");

/// In the regret, an under-routed conversation costs this many times the
/// price gap between its tier and the one it got: a weaker answer is worth
/// less than the money it saved (the user re-asks, or acts on it).
pub const QUALITY_PENALTY: i64 = 3;

/// Output tokens assumed when a request does not cap them.
const ASSUMED_OUTPUT: u64 = 500;

/// The paragraphs a `{{doc:N}}` is written with. Each document takes them
/// in an order of its own (see [`document`]): when every document was the
/// same paragraph, its words were one "a document is here" feature whose
/// weight came from the labels of the cases that held one, and any real
/// document sharing its common words inherited it.
const PARAGRAPHS: [&str; 12] = [
    "The operations team reviewed throughput, incident counts and customer feedback for \
the period. Volumes grew in line with the forecast, two minor incidents were resolved within \
their targets, and the backlog of maintenance tasks was reduced.",
    "Revenue for the quarter came in slightly above plan, driven by renewals in the mid-market \
segment. Operating expenses rose with the new hires in sales, and the cash position remains \
comfortable for the next eighteen months at the current rate of spending.",
    "Employees may work from home up to three days a week with their manager's agreement. \
Requests for a different arrangement go through the people team, who will reply within ten \
working days and keep a record of the decision and the reasons for it.",
    "The new checkout page shortened the average purchase from four steps to two. Early \
feedback from the pilot stores is positive, although several customers asked for clearer \
delivery dates and for the option to save more than one address.",
    "Either party may end this agreement with sixty days of written notice. Fees already paid \
for the current term are not refunded, and each party keeps the confidential information of \
the other for three years after the agreement ends.",
    "The warehouse in the north region handled most of the seasonal peak. Two carriers missed \
their pickup windows in the second week, which delayed about three hundred orders, and the \
team has since agreed a backup carrier for the busiest days.",
    "Support received more tickets about passwords and invoices than about anything else this \
month. Median first reply time was under two hours, and customers rated most conversations \
as helpful, with a few complaints about being passed between agents.",
    "The spring campaign reached more people than last year at a similar cost. Newsletter \
sign-ups grew fastest among visitors from partner sites, while paid social brought many \
visits but few purchases, so its budget moves to search for the next round.",
    "Participants in the study kept a daily diary for six weeks. Most reported better sleep \
by the fourth week, and the researchers note that the group was small, mostly from one city, \
and that a longer follow-up would be needed before drawing firm conclusions.",
    "The school will run its open day on the first Saturday of next month. Teachers will show \
the new science rooms and the library, parents can meet the sports coaches, and lunch will be \
served in the main hall from noon until two in the afternoon.",
    "The office move is planned for the end of the summer. Each team will pack its own desks, \
the facilities group will label the furniture, and the old building stays open for one more \
week so that anything forgotten can be collected.",
    "Purchasing compared three suppliers for office equipment on price, delivery time and \
warranty. The cheapest offer had the longest delivery time, so the recommendation is the \
second supplier, with a review of the contract after the first year.",
];

/// Filler functions per language, for `{{code:LANG:N}}`: pasted code,
/// where a report would not read like it.
const SNIPPETS: [(&str, [&str; 4]); 4] = [
    (
        "js",
        [
            "function totalOf(items) {\n  return items.reduce((sum, item) => sum + item.price * item.qty, 0);\n}",
            "export function toggle(state, id) {\n  return { ...state, open: state.open === id ? null : id };\n}",
            "async function loadUser(db, id) {\n  const row = await db.get('SELECT * FROM users WHERE id = ?', id);\n  if (!row) throw new Error(`no user ${id}`);\n  return row;\n}",
            "router.get('/health', (req, res) => {\n  res.json({ ok: true, uptime: process.uptime() });\n});",
        ],
    ),
    (
        "go",
        [
            "func (s *Store) Get(key string) (string, bool) {\n\ts.mu.RLock()\n\tdefer s.mu.RUnlock()\n\tv, ok := s.data[key]\n\treturn v, ok\n}",
            "func parsePort(raw string) (int, error) {\n\tp, err := strconv.Atoi(raw)\n\tif err != nil || p <= 0 || p > 65535 {\n\t\treturn 0, fmt.Errorf(\"bad port %q\", raw)\n\t}\n\treturn p, nil\n}",
            "func (q *Queue) Push(job Job) {\n\tq.mu.Lock()\n\tq.jobs = append(q.jobs, job)\n\tq.mu.Unlock()\n\tq.cond.Signal()\n}",
            "func retry(n int, f func() error) (err error) {\n\tfor i := 0; i < n; i++ {\n\t\tif err = f(); err == nil {\n\t\t\treturn nil\n\t\t}\n\t}\n\treturn err\n}",
        ],
    ),
    (
        "rust",
        [
            "fn mean(values: &[f64]) -> Option<f64> {\n    if values.is_empty() {\n        return None;\n    }\n    Some(values.iter().sum::<f64>() / values.len() as f64)\n}",
            "impl Cache {\n    fn insert(&self, key: u64, value: Vec<u8>) {\n        let mut map = self.map.lock().unwrap();\n        map.insert(key, value);\n    }\n}",
            "fn worker(queue: Arc<Mutex<Vec<Task>>>) {\n    while let Some(task) = queue.lock().unwrap().pop() {\n        task.run();\n    }\n}",
            "pub fn parse_line(line: &str) -> Result<(String, u32), ParseError> {\n    let (name, count) = line.split_once(',').ok_or(ParseError::Missing)?;\n    Ok((name.trim().to_owned(), count.trim().parse()?))\n}",
        ],
    ),
    (
        "python",
        [
            "def charge(account, amount):\n    if amount <= 0:\n        raise ValueError(amount)\n    account.balance -= amount\n    ledger.write(account.id, -amount)",
            "def load_config(path):\n    with open(path) as f:\n        raw = json.load(f)\n    return {k.lower(): v for k, v in raw.items()}",
            "class RetryingClient:\n    def get(self, url, tries=3):\n        for i in range(tries):\n            try:\n                return self.session.get(url, timeout=5)\n            except Timeout:\n                time.sleep(2 ** i)",
            "def batches(rows, size=500):\n    for start in range(0, len(rows), size):\n        yield rows[start:start + size]",
        ],
    ),
];

/// `n` functions of `lang` in one fenced block, ordered by `seed` like a
/// [`document`]'s sections; `None` for a language without snippets.
fn code(lang: &str, n: usize, seed: u64) -> Option<String> {
    let (_, snippets) = SNIPPETS.iter().find(|(name, _)| *name == lang)?;
    let body: Vec<&str> = (1..=n)
        .map(|i| snippets[(seed as usize).wrapping_add(i * 3) % snippets.len()])
        .collect();
    Some(format!("```{lang}\n{}\n```", body.join("\n\n")))
}

/// The most sections or functions one template may stand for (about 80k
/// tokens of report; the set's longest is 100 sections), so a typo of a
/// few digits is an error, not a process that fills memory.
const MAX_FILLER: usize = 1000;

/// `n` sections of a filler report. The paragraphs' order comes from
/// `seed` (a hash of the text the document stands in), so documents differ
/// from case to case but never from run to run.
fn document(n: usize, seed: u64) -> String {
    let count = PARAGRAPHS.len();
    let step = [1, 5, 7, 11][(seed >> 32) as usize % 4];
    (1..=n)
        .map(|i| {
            let paragraph = PARAGRAPHS[(seed as usize).wrapping_add(i * step) % count];
            format!("Section {i}. {paragraph}")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn fnv(text: &str) -> u64 {
    features::fnv1a(features::FNV_START, text.bytes())
}

/// One labelled conversation, read.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub family: String,
    pub label: Tier,
    pub request: ChatRequest,
    pub features: Features,
}

impl Case {
    /// Whether the case is in the fixed held-out 20% (by an FNV hash of its id).
    pub fn held_out(&self) -> bool {
        fnv(&self.id).is_multiple_of(5)
    }
}

#[derive(Deserialize)]
struct Line {
    id: String,
    #[serde(alias = "category")]
    family: String,
    label: String,
    request: Value,
}

fn expand(value: &mut Value) -> Result<(), String> {
    match value {
        Value::String(text) => {
            while let Some(start) = text.find("{{doc:").or_else(|| text.find("{{code:")) {
                let len = text[start..].find("}}").ok_or_else(|| {
                    let open: String = text[start..].chars().take(24).collect();
                    format!("`{open}…` is not closed")
                })?;
                let inner = &text[start + 2..start + len];
                let count = |n: &str| match n.parse::<usize>() {
                    Ok(n) if n <= MAX_FILLER => Ok(n),
                    _ => Err(format!(
                        "`{{{{{inner}}}}}`: {n:?} is not a count from 0 to {MAX_FILLER}"
                    )),
                };
                let filler = match inner.split(':').collect::<Vec<_>>()[..] {
                    ["doc", n] => document(count(n)?, fnv(text)),
                    ["code", lang, n] => code(lang, count(n)?, fnv(text))
                        .ok_or_else(|| format!("`{{{{{inner}}}}}`: no snippets in {lang:?}"))?,
                    _ => {
                        return Err(format!(
                            "`{{{{{inner}}}}}` is neither doc:N nor code:LANG:N"
                        ))
                    }
                };
                text.replace_range(start..start + len + 2, &filler);
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(expand),
        Value::Object(map) => map.values_mut().try_for_each(expand),
        _ => Ok(()),
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
            expand(&mut request).map_err(at)?;
            if let Some(object) = request.as_object_mut() {
                object.insert("model".into(), Value::String(super::AUTO.into()));
            }
            let request: ChatRequest =
                serde_json::from_value(request).map_err(|e| at(e.to_string()))?;
            Ok(Case {
                id: line.id,
                family: line.family,
                label,
                features: features::read(&request),
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

/// What a request costs in each tier: the median list prices of the tier's
/// paid models in the catalog.
#[derive(Debug, Clone, Copy)]
pub struct TierPrices([(PricePerMTok, PricePerMTok); 3]);

impl TierPrices {
    /// The prices of `catalog`.
    pub fn of(catalog: &Catalog) -> Self {
        TierPrices(Tier::ALL.map(|tier| {
            let median = |pick: fn(&catalog::Model) -> PricePerMTok| {
                let mut prices: Vec<PricePerMTok> = catalog
                    .tier(tier)
                    .filter(|m| !m.free)
                    .map(|m| pick(m))
                    .collect();
                prices.sort();
                prices.get(prices.len() / 2).copied().unwrap_or_default()
            };
            (
                median(|m| m.pricing.base.input),
                median(|m| m.pricing.base.output),
            )
        }))
    }

    fn cost(&self, tier: Tier, case: &Case) -> Money {
        let input: usize = case
            .request
            .messages
            .iter()
            .flat_map(|m| m.texts())
            .map(str::len)
            .sum();
        let output = case
            .request
            .requested_output_tokens()
            .map_or(ASSUMED_OUTPUT, u64::from);
        let (i, o) = self.0[rank(tier)];
        CostBuilder::default()
            .add(input as u64 / 4, i)
            .add(output, o)
            .total()
    }
}

/// A wrong decision.
#[derive(Debug, Clone)]
pub struct Miss {
    pub id: String,
    pub family: String,
    pub label: Tier,
    pub chosen: Tier,
    pub score: u8,
}

/// How a scorer did on a set.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `confusion[label][chosen]`, tiers in economy, standard, premium order.
    pub confusion: [[usize; 3]; 3],
    /// Cases that went wrong.
    pub misses: Vec<Miss>,
    /// What the wrong decisions cost (see [`QUALITY_PENALTY`]) ...
    pub regret: Money,
    /// ... against the spend of routing every case to its label.
    pub ideal: Money,
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

    /// Share routed one tier cheaper than labelled.
    pub fn under_by_one(&self) -> f64 {
        self.share(self.confusion[1][0] + self.confusion[2][1])
    }

    /// Share labelled premium and routed to economy.
    pub fn under_by_two(&self) -> f64 {
        self.share(self.confusion[2][0])
    }

    /// Share routed to a dearer tier than labelled.
    pub fn over_routed(&self) -> f64 {
        self.share(self.confusion[0][1] + self.confusion[0][2] + self.confusion[1][2])
    }

    /// Adds one decision.
    pub fn record(&mut self, case: &Case, chosen: Tier, score: u8, prices: &TierPrices) {
        self.confusion[rank(case.label)][rank(chosen)] += 1;
        let right = prices.cost(case.label, case);
        let got = prices.cost(chosen, case);
        self.ideal += right;
        if chosen == case.label {
            return;
        }
        self.regret += if rank(chosen) > rank(case.label) {
            got - right
        } else {
            Money::from_nanos((right - got).nanos().saturating_mul(QUALITY_PENALTY))
        };
        self.misses.push(Miss {
            id: case.id.clone(),
            family: case.family.clone(),
            label: case.label,
            chosen,
            score,
        });
    }

    /// Adds `other`'s decisions.
    pub fn merge(&mut self, other: Report) {
        for (row, o) in self.confusion.iter_mut().zip(other.confusion) {
            for (cell, n) in row.iter_mut().zip(o) {
                *cell += n;
            }
        }
        self.misses.extend(other.misses);
        self.regret += other.regret;
        self.ideal += other.ideal;
    }

    /// The summary lines, without the misses.
    pub fn summary(&self) -> String {
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        let mut out = format!(
            "{} conversations: exact tier {}/{} = {}\n",
            self.total(),
            self.correct(),
            self.total(),
            pct(self.accuracy())
        );
        out += &format!(
            "under-routed by one tier {}, premium → economy {}, over-routed {}\n",
            pct(self.under_by_one()),
            pct(self.under_by_two()),
            pct(self.over_routed())
        );
        let per_1k = |m: Money| m.nanos() as f64 / 1e9 * 1000.0 / self.total().max(1) as f64;
        out += &format!(
            "regret ${:.2} per 1,000 requests ({} of the ${:.2} that routing each to its label costs; under-routing ×{QUALITY_PENALTY})\n",
            per_1k(self.regret),
            pct(self.regret.nanos() as f64 / self.ideal.nanos().max(1) as f64),
            per_1k(self.ideal),
        );
        out += "\nlabel \\ chosen   economy  standard  premium\n";
        for (tier, row) in Tier::ALL.iter().zip(self.confusion) {
            out += &format!(
                "{:<16} {:>7}  {:>8}  {:>7}\n",
                tier.as_str(),
                row[0],
                row[1],
                row[2]
            );
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        if !self.misses.is_empty() {
            writeln!(f, "\nmisses:")?;
            for m in &self.misses {
                writeln!(
                    f,
                    "  {:<26} {:<18} {} → {} (score {})",
                    m.id, m.family, m.label, m.chosen, m.score
                )?;
            }
        }
        Ok(())
    }
}

/// Scores every case with `model`.
pub fn evaluate<'a>(
    cases: impl IntoIterator<Item = &'a Case>,
    model: &Model,
    config: &AutoConfig,
    prices: &TierPrices,
) -> Report {
    let mut report = Report::default();
    for case in cases {
        let decision = model.explain(&case.features, config);
        report.record(case, decision.tier, decision.score, prices);
    }
    report
}

/// Fits a model on `cases`.
pub fn fit<'a>(cases: impl IntoIterator<Item = &'a Case>, options: &Options) -> Model {
    let cases: Vec<&Case> = cases.into_iter().collect();
    let examples: Vec<Example> = cases
        .iter()
        .map(|c| Example {
            features: &c.features,
            label: c.label,
        })
        .collect();
    let mut model = train::fit(&examples, options);
    model.trained.families = families(cases.iter().copied()).len();
    model
}

/// The families of `cases`, sorted, each once.
pub fn families<'a>(cases: impl IntoIterator<Item = &'a Case>) -> Vec<&'a str> {
    let mut names: Vec<&str> = cases.into_iter().map(|c| c.family.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Leave-one-family-out over `cases`: per family, a model fitted on the
/// others scores it. Returns the pooled report and each family's.
pub fn cross_validate(
    cases: &[&Case],
    options: &Options,
    config: &AutoConfig,
    prices: &TierPrices,
) -> (Report, BTreeMap<String, Report>) {
    folds(cases, options, config, prices, |left_out, family| {
        family != left_out
    })
}

/// Leave-one-family-out with each fold fitted on only `kept` of the other
/// families, drawn at random (by a hash of `draw`, the family left out and
/// each other family's name: the same draw always picks the same ones).
/// Over several `kept` it shows how the left-out figure grows with the
/// kinds of task a fit has seen, which says whether more of them would help.
pub fn family_curve(
    cases: &[&Case],
    kept: usize,
    draw: u64,
    options: &Options,
    config: &AutoConfig,
    prices: &TierPrices,
) -> Report {
    let names = families(cases.iter().copied());
    let chosen: BTreeMap<&str, Vec<&str>> = names
        .iter()
        .map(|&left_out| {
            let mut others: Vec<&str> = names.iter().copied().filter(|f| *f != left_out).collect();
            others.sort_by_key(|f| fnv(&format!("{draw}/{left_out}/{f}")));
            others.truncate(kept);
            (left_out, others)
        })
        .collect();
    folds(cases, options, config, prices, |left_out, family| {
        chosen[left_out].contains(&family)
    })
    .0
}

/// Per family: a model fitted on the cases of the families `trains_on(it,
/// family)` accepts scores it. Returns the pooled report and each family's.
fn folds(
    cases: &[&Case],
    options: &Options,
    config: &AutoConfig,
    prices: &TierPrices,
    trains_on: impl Fn(&str, &str) -> bool,
) -> (Report, BTreeMap<String, Report>) {
    let mut pooled = Report::default();
    let mut per_family = BTreeMap::new();
    for family in families(cases.iter().copied()) {
        let model = fit(
            cases
                .iter()
                .copied()
                .filter(|c| trains_on(family, &c.family)),
            options,
        );
        let left_out = cases.iter().copied().filter(|c| c.family == family);
        let report = evaluate(left_out, &model, config, prices);
        pooled.merge(report.clone());
        per_family.insert(family.to_owned(), report);
    }
    (pooled, per_family)
}

/// The three figures `modelrouter evaluate` reports on the shipped set.
pub struct Study {
    pub training: Report,
    pub cross_validated: Report,
    pub per_family: BTreeMap<String, Report>,
    pub held_out: Report,
    /// How the folds were fitted and every figure scored, printed first so
    /// a report can be reproduced.
    pub options: Options,
    pub config: AutoConfig,
}

impl Study {
    /// Measures `model` (fitted on the training split with `options`) on `cases`.
    pub fn run(cases: &[Case], model: &Model, options: &Options, config: &AutoConfig) -> Self {
        let prices = TierPrices::of(&Catalog::builtin());
        let (test, train): (Vec<&Case>, Vec<&Case>) = cases.iter().partition(|c| c.held_out());
        let (cross_validated, per_family) = cross_validate(&train, options, config, &prices);
        Study {
            training: evaluate(train.iter().copied(), model, config, &prices),
            cross_validated,
            per_family,
            held_out: evaluate(test, model, config, &prices),
            options: options.clone(),
            config: config.clone(),
        }
    }
}

impl fmt::Display for Study {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, c) = (&self.options, &self.config);
        writeln!(
            f,
            "# Settings: folds fitted with L2 {}, {} steps; scored with under_penalty {}, \
             premium_guard {}, standard from {}, premium from {}\n",
            o.l2, o.steps, c.under_penalty, c.premium_guard, c.standard_from, c.premium_from
        )?;
        writeln!(
            f,
            "# Leave-one-family-out ({} families of the training split; each scored by a model fitted without it)\n{}",
            self.per_family.len(),
            self.cross_validated.summary()
        )?;
        writeln!(
            f,
            "# Held-out split (20% by id hash; no fit saw it), the shipped model\n{}",
            self.held_out
        )?;
        writeln!(
            f,
            "# Training split (what the shipped model was fitted on)\n{}",
            self.training.summary()
        )?;
        writeln!(
            f,
            "# Per family, left out\nfamily              cases  exact  under  over"
        )?;
        for (family, r) in &self.per_family {
            writeln!(
                f,
                "{family:<20} {:>5}  {:>4.0}%  {:>4.0}%  {:>3.0}%",
                r.total(),
                r.accuracy() * 100.0,
                (r.under_by_one() + r.under_by_two()) * 100.0,
                r.over_routed() * 100.0
            )?;
        }
        writeln!(f, "\n# Misses when left out")?;
        for m in &self.cross_validated.misses {
            writeln!(
                f,
                "  {:<26} {} → {} (score {})",
                m.id, m.label, m.chosen, m.score
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auto::model::Model;

    /// Two cases' documents differ, the same case's never does, and the
    /// shipped set's documents open in many ways (they were all one
    /// paragraph until 2026-12-06).
    #[test]
    fn documents_differ_between_cases_but_not_between_runs() {
        let line = |text: &str| {
            format!(
                r#"{{"id": "a", "family": "c", "label": "standard", "request": {{"messages": [{{"role": "user", "content": "{text}\n{{{{doc:4}}}}"}}]}}}}"#
            )
        };
        let read = |text: &str| {
            let cases = load(&line(text)).unwrap();
            let text: String = cases[0].request.messages[0].texts().collect();
            text
        };
        assert_eq!(read("Summarise:"), read("Summarise:"));
        assert_ne!(read("Summarise:"), read("Summarise this:"));
        let shipped = load(SHIPPED).expect("the shipped set loads");
        let openings: std::collections::HashSet<String> = shipped
            .iter()
            .flat_map(|c| c.request.messages.iter().flat_map(|m| m.texts()))
            .filter_map(|t| {
                t.find("Section 1. ")
                    .map(|at| t[at..].chars().take(400).collect())
            })
            .collect();
        assert!(openings.len() >= 40, "{} distinct openings", openings.len());
    }

    #[test]
    fn documents_expand_and_bad_lines_are_named() {
        let cases = load(r#"{"id": "a", "category": "c", "label": "standard", "request": {"messages": [{"role": "user", "content": "Read:\n{{doc:3}}"}]}}"#).unwrap();
        let text = cases[0].request.messages[0]
            .texts()
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(text.matches("Section ").count(), 3);
        let code = load(r#"{"id": "b", "family": "c", "label": "standard", "request": {"messages": [{"role": "user", "content": "Fix:\n{{code:go:2}}"}]}}"#).unwrap();
        let text: String = code[0].request.messages[0].texts().collect();
        assert!(
            text.starts_with("Fix:\n```go\nfunc") && text.ends_with("\n```"),
            "{text}"
        );
        for (template, says) in [
            ("{{code:cobol:2}}", "no snippets"),
            ("{{code:go:two}}", "not a count"),
            ("{{doc:99999999999}}", "not a count from 0 to 1000"),
            ("{{doc:3", "not closed"),
            ("{{code:3}}", "neither"),
        ] {
            let line = format!(
                r#"{{"id": "d", "family": "c", "label": "standard", "request": {{"messages": [{{"role": "user", "content": "Read {template}"}}]}}}}"#
            );
            let bad = load(&line).unwrap_err();
            assert!(
                bad.contains("line 1") && bad.contains(says),
                "{template}: {bad}"
            );
        }
        assert_eq!(cases[0].request.model, "auto");
        assert_eq!(cases[0].family, "c", "category is read as family");
        let bad = load("{\"id\": \"a\", \"family\": \"c\", \"label\": \"cheap\", \"request\": {}}")
            .unwrap_err();
        assert!(bad.contains("line 1") && bad.contains("cheap"), "{bad}");
    }

    #[test]
    fn the_shipped_set_is_large_varied_and_split() {
        let cases = load(SHIPPED).expect("the shipped set loads");
        assert!(cases.len() >= 1000, "{} cases", cases.len());
        assert!(families(&cases).len() >= 40);
        let held = cases.iter().filter(|c| c.held_out()).count();
        let share = held as f64 / cases.len() as f64;
        assert!((0.17..0.23).contains(&share), "held out {share}");
    }

    /// A conversation written twice would be scored against itself when one
    /// copy is held out and the other trained on (one was, until 2026-12-06).
    /// Compared as the messages and tools a model reads, letters lowercased.
    #[test]
    fn no_conversation_is_in_the_set_twice() {
        let mut seen = std::collections::HashMap::new();
        for line in SHIPPED.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let id = v["id"].as_str().expect("an id").to_owned();
            let read = v["request"].to_string().to_lowercase();
            if let Some(first) = seen.insert(read, id.clone()) {
                panic!("{id} repeats {first}");
            }
        }
    }

    /// The held-out targets (85% exact, at most 8% under by one, at most 1%
    /// premium → economy), met by the shipped model (85.8%, 4.5%, 0.5% on
    /// 2026-12-07: 70 families, 2,179 conversations, `under_penalty` 1.25):
    /// a retrained model or a new default that falls below them fails here.
    #[test]
    fn the_shipped_model_keeps_its_held_out_floor() {
        let cases = load(SHIPPED).expect("the shipped set loads");
        let prices = TierPrices::of(&Catalog::builtin());
        let model = Model::shipped();
        let held_out = cases.iter().filter(|c| c.held_out());
        let report = evaluate(held_out, &model, &AutoConfig::default(), &prices);
        assert!(report.accuracy() >= 0.85, "{report}");
        assert!(report.under_by_two() <= 0.01, "{report}");
        assert!(report.under_by_one() <= 0.08, "{report}");
        let trained_on = cases.iter().filter(|c| !c.held_out()).count();
        assert_eq!(
            model.trained.cases, trained_on,
            "fitted on the training split only"
        );
    }

    /// What the labelled set reads as, in one number: every case's dense
    /// values, text slots, values and kinds, and the words they name. The
    /// shipped model was fitted on exactly these features; a change to the
    /// reading that is not a new recipe (a faster search, say) must leave
    /// them alone, and a new recipe bumps `features::VERSION`, refits the
    /// model and writes the new number here.
    #[test]
    fn the_labelled_set_reads_as_the_shipped_model_was_fitted_on() {
        let mut h = features::FNV_START;
        let mut mix = |bytes: &[u8]| h = features::fnv1a(h, bytes.iter().copied());
        for case in load(SHIPPED).expect("the shipped set loads") {
            let f = &case.features;
            for x in f.dense {
                mix(&x.to_bits().to_le_bytes());
            }
            for t in &f.text {
                mix(&t.slot.to_le_bytes());
                mix(&t.value.to_bits().to_le_bytes());
                mix(t.kind.name().as_bytes());
                mix(f.name(t).as_bytes());
            }
        }
        assert_eq!(
            (crate::auto::features::VERSION, format!("{h:016x}")),
            (6, "e38df0fb00286351".to_owned())
        );
    }

    /// Base plus the shares is the score for every conversation; where no
    /// margin lands in the tier's range (both questions sure of standard),
    /// a score rounds onto a cut or past 0 or 100, the share that holds it
    /// says so, only at an edge of the tier's range, and such conversations
    /// are few.
    #[test]
    fn explanations_add_up_to_the_score_on_the_shipped_set() {
        let cases = load(SHIPPED).expect("the shipped set loads");
        let (model, config) = (Model::shipped(), AutoConfig::default());
        let mut held = 0;
        for case in &cases {
            let e = model.explain(&case.features, &config);
            let raw = e.base + e.contributions.iter().map(|c| c.points).sum::<f64>();
            assert_eq!(raw.round(), f64::from(e.score), "{}: {e:?}", case.id);
            if e.contributions
                .iter()
                .any(|c| c.signal == crate::auto::score::HELD)
            {
                // Past 0 or 100 is the scale's end, not a tier's: not counted.
                held += usize::from(!matches!(e.score, 0 | 100));
                assert!(
                    [0, 39, 40, 69, 70, 100].contains(&e.score),
                    "{}: {e:?}",
                    case.id
                );
            }
        }
        assert!(
            held * 100 <= cases.len() * 5,
            "{held} of {} held",
            cases.len()
        );
    }

    fn case(id: &str, family: &str, label: &str, text: &str) -> String {
        serde_json::json!({"id": id, "family": family, "label": label,
            "request": {"messages": [{"role": "user", "content": text}]}})
        .to_string()
    }

    /// Six families of three identical cases, two per tier, each family
    /// with a word of its own.
    fn six_families() -> Vec<Case> {
        let mut lines = Vec::new();
        for (family, label, text) in [
            ("greetings", "economy", "hello there friend"),
            ("thanks", "economy", "thanks a lot friend"),
            ("proofs", "premium", "prove the lemma rigorously"),
            ("theorems", "premium", "prove the theorem rigorously"),
            ("scripts", "standard", "write a script with tests"),
            ("parsers", "standard", "write a parser with tests"),
        ] {
            for i in 0..3 {
                lines.push(case(&format!("{family}-{i}"), family, label, text));
            }
        }
        load(&lines.join("\n")).unwrap()
    }

    #[test]
    fn each_family_is_scored_by_a_model_that_never_saw_it() {
        let cases = six_families();
        let refs: Vec<&Case> = cases.iter().collect();
        let prices = TierPrices::of(&Catalog::builtin());
        let options = Options::default();
        let (pooled, per_family) = cross_validate(&refs, &options, &AutoConfig::default(), &prices);
        assert_eq!(per_family.len(), 6);
        assert!(per_family.values().all(|r| r.total() == 3));
        assert_eq!(pooled.total(), 18);
        // A family whose one word the others never use is scored without it:
        // "hello" was never seen when greetings were left out.
        let full = fit(cases.iter(), &options);
        let greeting = &cases[0].features;
        let hello = greeting
            .text
            .iter()
            .find(|t| greeting.name(t) == "hello")
            .unwrap();
        assert_ne!(
            full.text[hello.slot as usize], [0.0; 2],
            "the full fit weighs it"
        );
        let without = fit(cases.iter().filter(|c| c.family != "greetings"), &options);
        assert_eq!(
            without.text[hello.slot as usize], [0.0; 2],
            "the left-out fit cannot"
        );
    }

    /// A report says first what it was measured with.
    #[test]
    fn a_study_names_its_settings_first() {
        let cases = six_families();
        let options = Options {
            l2: 0.002,
            steps: 50,
        };
        let config = AutoConfig {
            under_penalty: 1.5,
            premium_guard: 7.0,
            ..AutoConfig::default()
        };
        let model = fit(cases.iter(), &options);
        let report = Study::run(&cases, &model, &options, &config).to_string();
        assert_eq!(
            report.lines().next(),
            Some(
                "# Settings: folds fitted with L2 0.002, 50 steps; scored with under_penalty 1.5, \
                 premium_guard 7, standard from 40, premium from 70"
            ),
            "{report}"
        );
    }

    /// All the other families is leave-one-family-out itself; one of them
    /// is a fit that has seen one kind of task, and scores worse.
    #[test]
    fn the_family_curve_fits_each_fold_on_the_families_drawn() {
        let cases = six_families();
        let refs: Vec<&Case> = cases.iter().collect();
        let prices = TierPrices::of(&Catalog::builtin());
        let (options, config) = (Options::default(), AutoConfig::default());
        let curve = |kept, draw| family_curve(&refs, kept, draw, &options, &config, &prices);
        let (left_out, _) = cross_validate(&refs, &options, &config, &prices);
        let all = curve(5, 0);
        assert_eq!(
            (all.confusion, all.regret),
            (left_out.confusion, left_out.regret)
        );
        let one = curve(1, 0);
        assert_eq!(one.total(), 18, "every case is scored once");
        assert!(
            one.accuracy() < all.accuracy(),
            "{} against {}",
            one.accuracy(),
            all.accuracy()
        );
        assert_eq!(curve(1, 0).confusion, one.confusion, "a draw is repeatable");
    }

    #[test]
    fn regret_charges_under_routing_more_than_over_routing() {
        let cases = load(r#"{"id": "a", "family": "f", "label": "standard", "request": {"messages": [{"role": "user", "content": "x"}]}}"#)
        .unwrap();
        let prices = TierPrices::of(&Catalog::builtin());
        let mut over = Report::default();
        over.record(&cases[0], Tier::Premium, 90, &prices);
        let mut under = Report::default();
        under.record(&cases[0], Tier::Economy, 10, &prices);
        let gap_up = prices.cost(Tier::Premium, &cases[0]) - prices.cost(Tier::Standard, &cases[0]);
        let gap_down =
            prices.cost(Tier::Standard, &cases[0]) - prices.cost(Tier::Economy, &cases[0]);
        assert_eq!(over.regret, gap_up);
        assert_eq!(under.regret.nanos(), gap_down.nanos() * QUALITY_PENALTY);
        assert_eq!((over.misses.len(), under.under_by_one()), (1, 1.0));
    }
}
