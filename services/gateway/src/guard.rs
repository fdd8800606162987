//! The context-window guard: drop candidates whose window cannot hold the
//! prompt plus the requested output.
//!
//! Cheap bounds decide first: every tokenizer spends at least one byte per
//! token, so a prompt's byte length (plus fixed per-message tokens) is an
//! upper bound for all of them; when that fits, nothing is tokenized. Only
//! the undecided candidates pay for a count, and the count stops as soon as
//! the prompt is known not to fit the largest of them.
//!
//! Counts are exact o200k (OpenAI's tokenizer). Other providers' tokenizers
//! are estimated conservatively as o200k × a margin (see [`margin_permille`]),
//! never above the byte bound.

use std::sync::Arc;

use catalog::{Model, ProviderId, Tier};
use openai::ChatRequest;
use tokens::{Prompt, TokenCounter};

use crate::error::{GatewayError, PromptSize, TooLong};

/// Tokens a provider's tokenizer may produce per 1,000 o200k tokens (see
/// [`catalog::ProviderSpec`]).
pub fn margin_permille(provider: ProviderId) -> u64 {
    provider.spec().tokenizer_margin_permille
}

/// Keeps the candidates that can hold the request; `tier` names the tier for
/// errors (`None` when the model was pinned).
pub fn apply(
    counter: &TokenCounter,
    request: &ChatRequest,
    candidates: Vec<Arc<Model>>,
    tier: Option<Tier>,
) -> Result<Vec<Arc<Model>>, GatewayError> {
    let prompt = Prompt::of(request);
    let upper = prompt.upper_bound();
    let out = u64::from(request.requested_output_tokens().unwrap_or(0));

    let (mut fits, mut undecided) = (Vec::new(), Vec::new());
    let mut largest_output = 0;
    for model in candidates {
        largest_output = largest_output.max(model.max_output_tokens);
        if out > u64::from(model.max_output_tokens) {
            continue;
        }
        if upper + out <= u64::from(model.context_window) {
            fits.push(model);
        } else {
            undecided.push(model);
        }
    }
    if fits.is_empty() && undecided.is_empty() {
        let message = format!(
            "max_tokens is {out}, but the most output {} can produce is {largest_output} tokens.",
            tier.map_or("this model".to_owned(), |t| format!("any {t} model"))
        );
        return Err(GatewayError::invalid(
            message,
            Some("max_tokens".to_owned()),
        ));
    }
    if undecided.is_empty() {
        return Ok(fits);
    }

    let budget =
        |m: &Model| (u64::from(m.context_window) - out) * 1_000 / margin_permille(m.provider);
    let limit = undecided.iter().map(|m| budget(m)).max().unwrap_or(0);
    let counted = counter.count_till(&prompt, limit);
    if let Some(tokens) = counted {
        for model in &undecided {
            if estimate(tokens, model, upper) + out <= u64::from(model.context_window) {
                fits.push(Arc::clone(model));
            }
        }
    }
    if !fits.is_empty() {
        return Ok(fits);
    }
    Err(too_long(
        counter, &prompt, &undecided, counted, limit, out, tier,
    ))
}

/// A model's token estimate for a prompt of `tokens` o200k tokens, never above the byte bound.
fn estimate(tokens: u64, model: &Model, upper: u64) -> u64 {
    (tokens * margin_permille(model.provider))
        .div_ceil(1_000)
        .min(upper)
}

/// The `context_length_exceeded` error, naming the sizes. When the count stopped
/// early, the prompt is recounted up to twice the limit so the message can give
/// the real size; beyond that it says "more than".
fn too_long(
    counter: &TokenCounter,
    prompt: &Prompt<'_>,
    undecided: &[Arc<Model>],
    counted: Option<u64>,
    limit: u64,
    out: u64,
    tier: Option<Tier>,
) -> GatewayError {
    let largest = undecided
        .iter()
        .max_by_key(|m| m.context_window)
        .expect("undecided is not empty");
    let window = largest.context_window;
    let tokens = counted.or_else(|| counter.count_till(prompt, limit.saturating_mul(2)));
    let input = match tokens {
        None => PromptSize::MoreThan(limit.saturating_mul(2)),
        Some(t) if margin_permille(largest.provider) == 1_000 => PromptSize::Exact(t),
        Some(t) => PromptSize::Estimated {
            tokens: estimate(t, largest, prompt.upper_bound()),
            o200k: t,
            margin_permille: margin_permille(largest.provider),
            provider: largest.provider,
        },
    };
    GatewayError::ContextLengthExceeded(TooLong {
        window,
        input,
        out,
        tier,
    })
}
