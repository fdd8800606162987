//! The deployment's public pages, for anyone, without a session and
//! without any tenant's data: `/` (what this is, the tiers and their
//! current models, each provider's live status, sign-up and log-in),
//! `/status` (providers and models by circuit breaker, and the latest
//! breaker openings) and `/docs` (the API reference, rendered from the
//! README's API section, the same text the repository shows).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use catalog::{ProviderId, Tier};
use events::CircuitState;

use super::{html, Page};
use crate::ControlPlane;

/// The README, whose API section `/docs` shows.
const README: &str = include_str!("../../../../README.md");

/// A provider's status, from its models' breakers.
pub struct ProviderStatus {
    pub provider: String,
    /// `operational`, `degraded` (some model's breaker is not closed),
    /// `down` (all are open) or `unknown` (no gateway in this process).
    pub status: &'static str,
    /// (model id, tier, breaker state).
    pub models: Vec<(String, String, String)>,
}

/// A tier and its current models: (id, provider, free).
pub struct TierModels {
    pub tier: &'static str,
    pub models: Vec<(String, String, bool)>,
}

#[derive(Template)]
#[template(path = "landing.html")]
struct LandingPage {
    tiers: Vec<TierModels>,
    providers: Vec<ProviderStatus>,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    providers: Vec<ProviderStatus>,
    /// (UTC time, what opened).
    incidents: Vec<(String, String)>,
    known: bool,
}

#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage {
    body: String,
}

impl ControlPlane {
    /// Every provider of the catalog with its models' breaker states.
    fn provider_status(&self) -> Vec<ProviderStatus> {
        let catalog = self.catalog.snapshot();
        let mut out: Vec<ProviderStatus> = Vec::new();
        for provider in ProviderId::ALL {
            let models: Vec<(String, String, String)> = catalog
                .models()
                .iter()
                .filter(|m| m.provider == provider)
                .map(|m| {
                    let state = self.circuits.as_ref().map(|c| c.state(m.provider, &m.id));
                    let state = state.map_or("unknown", CircuitState::as_str);
                    (m.id.clone(), m.tier.to_string(), state.to_owned())
                })
                .collect();
            if models.is_empty() {
                continue;
            }
            let open = models.iter().filter(|m| m.2 != "closed").count();
            let status = match () {
                _ if self.circuits.is_none() => "unknown",
                _ if open == 0 => "operational",
                _ if open == models.len() => "down",
                _ => "degraded",
            };
            out.push(ProviderStatus {
                provider: provider.to_string(),
                status,
                models,
            });
        }
        out
    }
}

async fn landing(State(cp): State<Arc<ControlPlane>>) -> Page {
    let catalog = cp.catalog.snapshot();
    let tiers = Tier::ALL
        .into_iter()
        .map(|tier| TierModels {
            tier: tier.as_str(),
            models: catalog
                .tier(tier)
                .map(|m| (m.id.clone(), m.provider.to_string(), m.free))
                .collect(),
        })
        .collect();
    Ok(html(&LandingPage {
        tiers,
        providers: cp.provider_status(),
    }))
}

async fn status(State(cp): State<Arc<ControlPlane>>) -> Page {
    let incidents = cp
        .circuits
        .as_ref()
        .map(|c| c.incidents())
        .unwrap_or_default()
        .into_iter()
        .map(|(at, what)| (at.format("%Y-%m-%d %H:%M:%S").to_string(), what))
        .collect();
    Ok(html(&StatusPage {
        providers: cp.provider_status(),
        incidents,
        known: cp.circuits.is_some(),
    }))
}

/// The README's `## API` section as HTML: from its heading to the next
/// top-level section.
fn api_reference() -> String {
    let start = README.find("\n## API\n").map_or(0, |i| i + 1);
    let rest = &README[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let parser =
        pulldown_cmark::Parser::new_ext(&rest[..end], pulldown_cmark::Options::ENABLE_TABLES);
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

async fn docs() -> Page {
    Ok(html(&DocsPage {
        body: api_reference(),
    }))
}

/// The public routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/", get(landing))
        .route("/status", get(status))
        .route("/docs", get(docs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reference_is_the_readme_api_section_and_nothing_after() {
        let body = super::api_reference();
        assert!(body.starts_with("<h2>API</h2>"), "{}", &body[..80]);
        assert!(body.contains("<table>") && body.contains("X-Request-Id"));
        assert!(
            !body.contains("<h2>Billing"),
            "the next section is not shown"
        );
    }
}
