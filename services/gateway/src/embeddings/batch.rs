//! Splitting a request's inputs into calls within a provider's limits.
//!
//! Inputs are taken in order and a call is closed when one more input would
//! pass the item limit or the token limit, so concatenating the calls'
//! answers restores the input order. Token limits are checked against the
//! gateway's own count (o200k), which can differ from the provider's
//! tokenizer, so only 90% of a token limit is used.

use std::ops::Range;

use catalog::BatchLimits;

/// The share of a provider's per-call token limit the gateway fills.
const TOKEN_BUDGET_PERCENT: u64 = 90;

/// The calls for inputs of `tokens` each, as index ranges in input order.
pub fn split(tokens: &[u64], limits: BatchLimits) -> Vec<Range<usize>> {
    let max_items = (limits.max_inputs as usize).max(1);
    let budget = limits
        .max_tokens
        .map(|t| u64::from(t) * TOKEN_BUDGET_PERCENT / 100);
    let mut calls = Vec::new();
    let mut start = 0;
    let mut used = 0u64;
    for (i, &t) in tokens.iter().enumerate() {
        let full = i - start == max_items || budget.is_some_and(|b| i > start && used + t > b);
        if full {
            calls.push(start..i);
            start = i;
            used = 0;
        }
        used += t;
    }
    if start < tokens.len() {
        calls.push(start..tokens.len());
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_inputs: u32, max_tokens: Option<u32>) -> BatchLimits {
        BatchLimits {
            max_inputs,
            max_tokens,
        }
    }

    #[test]
    fn calls_cover_every_input_once_in_order_within_limits() {
        let tokens: Vec<u64> = (0..1000).map(|i| 1 + (i * 37 % 101)).collect();
        for limit in [
            limits(1, None),
            limits(7, None),
            limits(100, Some(400)),
            limits(2048, Some(1000)),
        ] {
            let calls = split(&tokens, limit);
            let flat: Vec<usize> = calls.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..tokens.len()).collect::<Vec<_>>());
            for call in &calls {
                assert!(!call.is_empty());
                assert!(call.len() <= limit.max_inputs as usize);
                if let Some(max) = limit.max_tokens {
                    let sum: u64 = tokens[call.clone()].iter().sum();
                    assert!(sum * 100 <= u64::from(max) * TOKEN_BUDGET_PERCENT, "{sum}");
                }
            }
        }
    }

    #[test]
    fn item_and_token_limits_each_close_a_call() {
        assert_eq!(
            split(&[1, 1, 1, 1, 1], limits(2, None)),
            vec![0..2, 2..4, 4..5]
        );
        // Budget 90 of 100: 50 + 50 does not fit, 50 + 40 does.
        assert_eq!(
            split(&[50, 50, 40], limits(10, Some(100))),
            vec![0..1, 1..3]
        );
        // An input over the budget still goes, alone (the provider judges it).
        assert_eq!(
            split(&[5, 95, 5], limits(10, Some(100))),
            vec![0..1, 1..2, 2..3]
        );
        assert!(split(&[], limits(10, None)).is_empty());
    }
}
