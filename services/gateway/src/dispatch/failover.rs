//! The failover loop every request kind shares: try the candidates in
//! order within the request's total deadline, skip those whose health says
//! they would fail, fall through on retryable failures, stop at the first
//! answer or at a failure another provider would repeat.

use std::time::{Duration, Instant};

use crate::error::{Attempt, GatewayError, Soonest};
use crate::health::{Monitored, Skip};
use crate::providers::{Provider, ProviderError};
use crate::Gateway;

/// Something the loop can try: it names the model whose provider serves it.
pub trait Target {
    /// The model tried, as health and attempts know it.
    type Model: Monitored + ?Sized;
    /// The model tried.
    fn model(&self) -> &Self::Model;
}

impl Target for std::sync::Arc<catalog::Model> {
    type Model = catalog::Model;
    fn model(&self) -> &catalog::Model {
        self
    }
}

/// Why one candidate did not answer.
#[derive(Debug)]
pub enum Failure {
    /// Its breaker (or a cool-down) turned the call away before it started.
    Skipped(Skip),
    /// The call failed.
    Failed(ProviderError),
}

/// One call at one candidate, as each request kind makes it.
pub trait Attempter<C> {
    /// What a candidate that answered gives back.
    type Answer;
    /// Calls `candidate` through `provider`; `before` holds the attempts so far.
    fn attempt<'s>(
        &'s self,
        candidate: &'s C,
        provider: &'s dyn Provider,
        before: &'s [Attempt],
    ) -> impl std::future::Future<Output = Result<Self::Answer, Failure>> + Send + 's;
}

/// The answer of the candidate that served, which one it was, and every
/// attempt before it (skipped and failed).
pub struct Won<'a, C, T> {
    /// The answer.
    pub value: T,
    /// The candidate that gave it.
    pub target: &'a C,
    /// The attempts before it, skipped and failed.
    pub attempts: Vec<Attempt>,
}

impl<C, T> Won<'_, C, T> {
    /// How many calls were made, the one that served included.
    pub fn tries(&self) -> usize {
        tries(&self.attempts)
    }
}

/// Calls made among `attempts`, plus the one about to start.
pub fn tries(attempts: &[Attempt]) -> usize {
    attempts.iter().filter(|a| !a.skipped).count() + 1
}

/// Tries `candidates` in order with `attempter` until one answers, all within `config.total_timeout`.
/// A deadline that strikes mid-attempt reports the attempt it cut short, with
/// the time that was left for it.
pub async fn run<'a, C: Target, A: Attempter<C>>(
    gateway: &Gateway,
    candidates: &'a [C],
    attempter: &A,
) -> Result<Won<'a, C, A::Answer>, GatewayError> {
    let deadline = gateway.config.total_timeout();
    let mut attempts = Vec::new();
    let within = tokio::time::timeout(
        deadline,
        each(gateway, candidates, &mut attempts, attempter),
    )
    .await;
    match within {
        Ok(Ok((value, target))) => Ok(Won {
            value,
            target,
            attempts,
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => {
            let spent: u64 = attempts.iter().map(|a| a.latency_ms).sum();
            let cut = candidates.get(attempts.len()).map(|c| Attempt {
                provider: c.model().provider().to_string(),
                model: c.model().id().to_owned(),
                status: None,
                error: format!("total deadline of {} ms expired", deadline.as_millis()),
                latency_ms: duration_ms(deadline).saturating_sub(spent),
                skipped: false,
            });
            attempts.extend(cut);
            Err(GatewayError::AllCandidatesFailed {
                attempts,
                retry_after_s: None,
            })
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The loop itself; failed and skipped attempts land in `attempts`, which
/// the caller keeps if the deadline strikes.
async fn each<'a, C: Target, A: Attempter<C>>(
    gateway: &Gateway,
    candidates: &'a [C],
    attempts: &mut Vec<Attempt>,
    attempter: &A,
) -> Result<(A::Answer, &'a C), GatewayError> {
    let mut soonest = Soonest::default();
    for candidate in candidates {
        let model = candidate.model();
        let Some(provider) = gateway.providers.get(model.provider()) else {
            continue;
        };
        let started = Instant::now();
        let error = match attempter
            .attempt(candidate, provider.as_ref(), attempts)
            .await
        {
            Ok(value) => return Ok((value, candidate)),
            Err(Failure::Skipped(skip)) => {
                soonest.note(skip.retry_in);
                attempts.push(Attempt::skipped(model, skip));
                continue;
            }
            Err(Failure::Failed(error)) => error,
        };
        tracing::warn!(provider = %model.provider(), model = %model.id(), %error, "attempt failed");
        attempts.push(Attempt::failed(model, &error, started.elapsed()));
        if !error.retryable() {
            return Err(GatewayError::UpstreamRejected {
                status: error.status().unwrap_or(502),
                provider: model.provider().to_string(),
                message: error.to_string(),
                attempts: std::mem::take(attempts),
            });
        }
        if let Some(wait) = error.retry_after() {
            soonest.note(wait);
        }
    }
    Err(GatewayError::AllCandidatesFailed {
        attempts: std::mem::take(attempts),
        retry_after_s: soonest.seconds(),
    })
}
