//! `modelrouter evaluate` and `modelrouter train-auto`: measuring and fitting
//! the model behind `model: "auto"` (see `gateway::auto::eval` and `::train`).

use std::path::{Path, PathBuf};

use gateway::auto::eval::{self, Case, Study, TierPrices};
use gateway::auto::train::Options;
use gateway::auto::{AutoConfig, Model};

use crate::serve::BoxError;

/// Fitting settings; unset ones come from the model in use (evaluate) or
/// the defaults (train-auto). The under-routing penalty is not one: it is
/// `[gateway.auto] under_penalty`, applied when scoring.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FitArgs {
    /// L2 penalty on the weights.
    #[arg(long)]
    l2: Option<f64>,
    /// Optimisation steps.
    #[arg(long)]
    steps: Option<usize>,
}

impl FitArgs {
    fn options(&self, base: Options) -> Options {
        Options {
            l2: self.l2.unwrap_or(base.l2),
            steps: self.steps.unwrap_or(base.steps),
        }
    }
}

fn read_set(path: Option<&Path>) -> Result<Vec<Case>, BoxError> {
    let text = match path {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
        None => eval::SHIPPED.to_owned(),
    };
    Ok(eval::load(&text)?)
}

/// The model `[gateway.auto] model` names, or the shipped one.
fn model_in_use(config: &AutoConfig) -> Result<Model, BoxError> {
    Ok(match &config.model {
        Some(p) => Model::load(p)?,
        None => Model::shipped(),
    })
}

/// The fitting settings `model` was trained with.
fn trained_with(model: &Model) -> Options {
    Options {
        l2: model.trained.l2,
        steps: model.trained.steps,
    }
}

/// `modelrouter evaluate [FILE]`.
pub fn evaluate(
    path: Option<PathBuf>,
    explain: Option<String>,
    fit: FitArgs,
    config: &AutoConfig,
) -> Result<(), BoxError> {
    let model = model_in_use(config)?;
    let cases = read_set(path.as_deref())?;
    if let Some(id) = explain {
        let case = cases
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| format!("no conversation `{id}` in the set"))?;
        let e = model.explain(&case.features, config);
        println!(
            "{id}: labelled {}, scored {} → {} (set by the {} question)",
            case.label,
            e.score,
            e.tier,
            e.question.name()
        );
        println!("  {:>7.1}  base", e.base);
        for c in &e.contributions {
            println!("  {:>+7.1}  {} ({:.2})", c.points, c.signal, c.value);
        }
        return Ok(());
    }
    if path.is_some() {
        let prices = TierPrices::of(&catalog::Catalog::builtin());
        print!("{}", eval::evaluate(&cases, &model, config, &prices));
        return Ok(());
    }
    print!(
        "{}",
        Study::run(&cases, &model, &fit.options(trained_with(&model)), config)
    );
    Ok(())
}

/// `modelrouter evaluate --family-curve [DRAWS]`: the left-out figure on the
/// training split as each fold is fitted on 10, 20, … of the other families,
/// then on all of them (see [`eval::family_curve`]).
pub fn family_curve(
    path: Option<PathBuf>,
    draws: u64,
    fit: FitArgs,
    config: &AutoConfig,
) -> Result<(), BoxError> {
    let options = fit.options(trained_with(&model_in_use(config)?));
    let cases = read_set(path.as_deref())?;
    let train: Vec<&Case> = cases.iter().filter(|c| !c.held_out()).collect();
    let prices = TierPrices::of(&catalog::Catalog::builtin());
    let others = eval::families(train.iter().copied())
        .len()
        .saturating_sub(1);
    if others == 0 {
        return Err("the family curve needs at least two families in the training split".into());
    }
    let mut sizes: Vec<usize> = (10..others).step_by(10).collect();
    sizes.push(others);
    let width = 7 * draws.max(1) as usize;
    println!(
        "# Left out, each fold fitted on some of the other {others} families \
         (training split, {} conversations; draws of each size: {draws})\n\
         families  {:<width$}  under by one, each draw",
        train.len(),
        "exact, each draw"
    );
    for kept in sizes {
        // Every draw of all the others is the same fit.
        let draws = if kept == others { 1 } else { draws.max(1) };
        let reports: Vec<_> = (0..draws)
            .map(|draw| eval::family_curve(&train, kept, draw, &options, config, &prices))
            .collect();
        let column = |figure: fn(&eval::Report) -> f64| {
            reports
                .iter()
                .map(|r| format!("{:5.1}%", figure(r) * 100.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{kept:>8}  {:<width$}  {}",
            column(eval::Report::accuracy),
            column(eval::Report::under_by_one)
        );
    }
    Ok(())
}

/// `modelrouter train-auto --out FILE`.
pub fn train(corpus: Option<PathBuf>, out: &Path, fit: FitArgs) -> Result<(), BoxError> {
    let cases = read_set(corpus.as_deref())?;
    let options = fit.options(Options::default());
    let model = eval::fit(cases.iter().filter(|c| !c.held_out()), &options);
    std::fs::write(out, model.to_json())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let prices = TierPrices::of(&catalog::Catalog::builtin());
    let config = AutoConfig::default();
    let training = eval::evaluate(
        cases.iter().filter(|c| !c.held_out()),
        &model,
        &config,
        &prices,
    );
    println!(
        "wrote {} ({} conversations, {} families; l2 {}, {} steps)\n\n# Training split\n{}",
        out.display(),
        model.trained.cases,
        model.trained.families,
        options.l2,
        options.steps,
        training.summary()
    );
    Ok(())
}
