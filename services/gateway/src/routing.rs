//! From a request's `model` and `prefer` to an ordered list of candidates.
//!
//! 1. Target: a tier's models (for `auto`, the tier its score maps to; see
//!    [`crate::auto`]), or one pinned model (no tier logic).
//! 2. Drop models whose provider is not configured.
//! 3. Drop models that cannot carry the request (tools, images, JSON mode,
//!    streaming, or a field the provider's dialect refuses).
//! 4. Drop models whose context window cannot hold it (the guard).
//! 5. Drop models whose provider the account blocked (403 when none is left).
//! 6. Without credit, keep only free models (402 when none is left).
//! 7. Order the rest by `prefer`.
//!
//! When a step empties the list the request fails with the reason of that step.
//! A request may name several targets (`model`, then OpenRouter's `models`
//! fallback list): each runs these steps on its own, and their candidates
//! are tried in that order. Last, a request of an account without credit
//! counts against the free-use rate limit (429), once.

use std::sync::Arc;

use catalog::{Catalog, Model, Tier};
use openai::ChatRequest;

use crate::accounts::Allowance;
use crate::auto::{self, Explanation};
use crate::error::{GatewayError, Unconfigured, Unpaid};
use crate::keys::Caller;
use crate::prefer::{self, Prefer};
use crate::providers::{Registry, Unsupported};
use crate::{guard, Gateway};

/// What the client asked for in `model`.
#[derive(Debug, Clone)]
pub enum Target {
    /// Any model of a tier.
    Tier(Tier),
    /// The tier the conversation's score maps to.
    Auto,
    /// Exactly this model.
    Pinned(Arc<Model>),
}

impl Target {
    /// Reads `model`: a tier name or a catalog model id.
    pub fn resolve(catalog: &Catalog, model: &str) -> Result<Target, GatewayError> {
        if let Some(tier) = Tier::parse(model) {
            return Ok(Target::Tier(tier));
        }
        if model == auto::AUTO {
            return Ok(Target::Auto);
        }
        catalog
            .model(model)
            .map(|m| Target::Pinned(Arc::clone(m)))
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))
    }

    fn tier(&self) -> Option<Tier> {
        match self {
            Target::Tier(t) => Some(*t),
            Target::Auto | Target::Pinned(_) => None,
        }
    }
}

/// The candidates, best first, and how `auto` chose their tier.
#[derive(Debug, Clone)]
pub struct Plan {
    pub candidates: Vec<Arc<Model>>,
    pub auto: Option<Explanation>,
}

/// Who asks, and what the account may use now (steps 5 and 6).
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The key's account and the key itself.
    pub caller: &'a Caller,
    /// Whether the account has credit (read before the body).
    pub allowance: Allowance,
}

/// The most entries `model` and `models` may name together.
pub const MAX_TARGETS: usize = 8;

/// The candidates for `request`, best first: those of `model`, then those
/// of each `models` entry in turn (OpenRouter's fallback list), each model
/// once. Every target runs steps 1–7 on its own; the request fails only when
/// none has a candidate left, with the first target's reason.
pub fn plan(
    gateway: &Gateway,
    catalog: &Catalog,
    request: &ChatRequest,
    prefer: Prefer,
    access: Access<'_>,
) -> Result<Plan, GatewayError> {
    let plan = plan_targets(gateway, catalog, request, prefer, access)?;
    if !access.allowance.paid {
        gateway.admit_free(access.caller)?;
    }
    Ok(plan)
}

fn plan_targets(
    gateway: &Gateway,
    catalog: &Catalog,
    request: &ChatRequest,
    prefer: Prefer,
    access: Access<'_>,
) -> Result<Plan, GatewayError> {
    if request.models.is_none() && !request.model.is_empty() {
        // One target, as nearly every request names: no list to merge.
        let target = Target::resolve(catalog, &request.model)?;
        return plan_target(gateway, catalog, request, prefer, access, target);
    }
    let names = target_names(request)?;
    let targets = names
        .iter()
        .map(|name| Target::resolve(catalog, name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plan = Plan {
        candidates: Vec::new(),
        auto: None,
    };
    let mut first_error = None;
    for target in targets {
        match plan_target(gateway, catalog, request, prefer, access, target) {
            Ok(found) => {
                plan.auto = plan.auto.or(found.auto);
                for model in found.candidates {
                    if !plan.candidates.iter().any(|m| m.id == model.id) {
                        plan.candidates.push(model);
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (plan.candidates.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(plan),
    }
}

/// `model`, then the `models` entries not already named, checked.
fn target_names(request: &ChatRequest) -> Result<Vec<&str>, GatewayError> {
    let mut names: Vec<&str> = Vec::new();
    let listed = request.models.iter().flatten().map(String::as_str);
    for name in std::iter::once(request.model.as_str()).chain(listed) {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    if request
        .models
        .as_ref()
        .is_some_and(|m| m.iter().any(String::is_empty))
    {
        return Err(GatewayError::invalid(
            "`models` entries must be tiers, `auto` or model ids, not empty strings.",
            Some("models".to_owned()),
        ));
    }
    match names.len() {
        0 => Err(GatewayError::invalid(
            "You must provide a model parameter (`model`, or a `models` list).",
            Some("model".to_owned()),
        )),
        n if n > MAX_TARGETS => Err(GatewayError::invalid(
            format!(
                "`model` and `models` may name at most {MAX_TARGETS} tiers or models together."
            ),
            Some("models".to_owned()),
        )),
        _ => Ok(names),
    }
}

/// Steps 1–7 for one target.
fn plan_target(
    gateway: &Gateway,
    catalog: &Catalog,
    request: &ChatRequest,
    prefer: Prefer,
    access: Access<'_>,
    mut target: Target,
) -> Result<Plan, GatewayError> {
    let mut explanation = None;
    if let Target::Auto = target {
        let decided = gateway.decide_auto(request);
        target = Target::Tier(decided.tier);
        explanation = Some(decided);
    }
    let models: Vec<Arc<Model>> = match &target {
        Target::Tier(tier) => catalog.tier(*tier).cloned().collect(),
        Target::Pinned(model) => vec![Arc::clone(model)],
        Target::Auto => Vec::new(),
    };

    let configured: Vec<_> = models
        .into_iter()
        .filter(|m| gateway.providers.get(m.provider).is_some())
        .collect();
    if configured.is_empty() {
        return Err(GatewayError::NoProvider(match &target {
            Target::Tier(tier) => Unconfigured::Tier(*tier),
            Target::Auto => Unconfigured::Auto,
            Target::Pinned(m) => Unconfigured::Model {
                id: m.id.clone(),
                provider: m.provider,
            },
        }));
    }

    let mut refusal = None;
    let capable: Vec<_> = configured
        .into_iter()
        .filter(|m| match carries(&gateway.providers, m, request) {
            Ok(()) => true,
            Err(why) => {
                refusal.get_or_insert(why);
                false
            }
        })
        .collect();
    if capable.is_empty() {
        let why = refusal.expect("a candidate was refused, so a reason was recorded");
        let message = match target.tier() {
            Some(tier) => format!("No {tier} model can serve this request: {}.", why.reason),
            None => format!("{}.", why.reason),
        };
        return Err(GatewayError::invalid(message, Some(why.param.to_owned())));
    }

    let mut fitting = guard::apply(&gateway.tokens, request, capable, target.tier())?;
    gateway
        .policies
        .filter(access.caller.account, &mut fitting, |m| m.provider)?;
    if !access.allowance.paid {
        fitting.retain(|m| m.free);
        if fitting.is_empty() {
            return Err(GatewayError::InsufficientCredits(Unpaid::Chat));
        }
    }
    prefer::order(
        prefer,
        &mut fitting,
        request.requested_output_tokens(),
        |m| gateway.health.speed(m),
    );
    Ok(Plan {
        candidates: fitting,
        auto: explanation,
    })
}

/// Whether `model` can carry every feature `request` uses.
fn carries(providers: &Registry, model: &Model, request: &ChatRequest) -> Result<(), Unsupported> {
    let caps = model.capabilities;
    let lacks = |param: &'static str, what: &str| {
        Err(Unsupported {
            param,
            reason: format!("`{}` does not support {what}", model.id),
        })
    };
    if request.uses_tools() && !caps.tools {
        return lacks("tools", "tool calling");
    }
    if request.has_images() && !caps.vision {
        return lacks("messages", "image inputs");
    }
    if request
        .response_format
        .as_ref()
        .is_some_and(|f| f.get("type").and_then(|t| t.as_str()) != Some("text"))
        && !caps.json_mode
    {
        return lacks("response_format", "JSON mode");
    }
    if request.is_stream() && !caps.streaming {
        return lacks("stream", "streaming");
    }
    match providers.get(model.provider) {
        Some(provider) => provider.check(model, request),
        None => Ok(()),
    }
}
