//! The Telemetry page: where the account's request traces go (owners only).
//! A destination is a vendor preset (token and dataset or region) or an OTLP
//! endpoint with headers; header values are sealed when saved and never
//! shown again. Each destination shows how delivery goes and can send a
//! test span.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use exporter::destination::DestinationInput;
use serde::Deserialize;
use uuid::Uuid;

use super::{html, see_other, Nav, Page};
use crate::error::CpError;
use crate::extract::{CheckedForm, Csrf, Signed};
use crate::ops::telemetry::DestinationView;
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "telemetry.html")]
struct TelemetryPage {
    nav: Nav,
    destinations: Vec<DestinationView>,
    /// The add form's inputs as last sent (never a token or header value).
    form: NewDestination,
    protocols: [&'static str; 3],
    presets: [&'static str; 4],
}

/// The add form.
#[derive(Deserialize, Default, Clone)]
pub(super) struct NewDestination {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    preset: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    instance: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    header_name: String,
    #[serde(default)]
    header_value: String,
    #[serde(default)]
    header_name_2: String,
    #[serde(default)]
    header_value_2: String,
    #[serde(default)]
    sampling: String,
    #[serde(default)]
    ratio: String,
    /// `true` when the box is ticked.
    #[serde(default)]
    capture_content: String,
}

#[derive(Deserialize)]
pub(super) struct Button {
    #[serde(default)]
    csrf: String,
}

csrf_forms!(NewDestination, Button);

fn text(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl NewDestination {
    fn input(&self) -> Result<DestinationInput, CpError> {
        let mut headers = std::collections::BTreeMap::new();
        for (name, value) in [
            (&self.header_name, &self.header_value),
            (&self.header_name_2, &self.header_value_2),
        ] {
            if !name.trim().is_empty() || !value.trim().is_empty() {
                headers.insert(name.clone(), value.clone());
            }
        }
        let ratio = match text(&self.ratio) {
            None => None,
            Some(r) => Some(r.parse::<f64>().map_err(|_| CpError::Invalid {
                param: "ratio",
                message: format!(
                    "`{}` is not a number: a sampling ratio is like 0.1.",
                    crate::echo(&r)
                ),
            })?),
        };
        Ok(DestinationInput {
            name: self.name.clone(),
            preset: text(&self.preset),
            token: text(&self.token),
            dataset: text(&self.dataset),
            region: text(&self.region),
            instance: text(&self.instance),
            protocol: text(&self.protocol),
            endpoint: text(&self.endpoint),
            headers,
            sampling: text(&self.sampling),
            ratio,
            capture_content: self.capture_content == "true",
        })
    }

    /// The form to show again: secrets dropped.
    fn redisplayed(&self) -> NewDestination {
        NewDestination {
            token: String::new(),
            header_value: String::new(),
            header_value_2: String::new(),
            ..self.clone()
        }
    }
}

/// The page with `nav` (its notice or error set) and the add form.
async fn page(
    cp: &ControlPlane,
    member: &crate::ops::Member,
    nav: Nav,
    form: NewDestination,
) -> Result<TelemetryPage, CpError> {
    Ok(TelemetryPage {
        destinations: cp.destinations(member).await?,
        nav,
        form,
        protocols: ["http/protobuf", "http/json", "grpc"],
        presets: exporter::preset::NAMES,
    })
}

#[derive(Deserialize)]
pub(super) struct Notice {
    #[serde(default)]
    notice: String,
}

pub(super) async fn telemetry_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    Query(q): Query<Notice>,
) -> Page {
    member.require_owner()?;
    let mut nav = Nav::new(&member, csrf, "telemetry");
    nav.notice = match q.notice.as_str() {
        "saved" => Some(
            "Destination saved. Its header values are sealed and will not be shown again.".into(),
        ),
        "deleted" => Some("Destination deleted, with its backlog.".into()),
        _ => None,
    };
    Ok(html(
        &page(&cp, &member, nav, NewDestination::default()).await?,
    ))
}

pub(super) async fn add(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<NewDestination>,
) -> Page {
    member.require_owner()?;
    let saved = match f.input() {
        Ok(input) => cp.save_destination(&member, None, &input).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(see_other("/telemetry?notice=saved")),
        Err(e @ (CpError::Invalid { .. } | CpError::BadInput(_) | CpError::Conflict(_))) => {
            let mut nav = Nav::new(&member, csrf, "telemetry");
            nav.error = Some(e.to_string());
            let page = page(&cp, &member, nav, f.redisplayed()).await?;
            Ok((StatusCode::BAD_REQUEST, html(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

fn id(raw: &str) -> Result<Uuid, CpError> {
    raw.parse().map_err(|_| CpError::NotFound)
}

pub(super) async fn test(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    Path(raw): Path<String>,
    CheckedForm(_): CheckedForm<Button>,
) -> Page {
    let result = cp.test_destination(&member, id(&raw)?).await?;
    let mut nav = Nav::new(&member, csrf, "telemetry");
    match result.error {
        None => {
            nav.notice = Some(format!(
                "Test span delivered in {} ms: look for \"modelrouter test span\" in your backend.",
                result.latency_ms
            ))
        }
        Some(e) => {
            nav.error = Some(format!(
                "The test span was not delivered ({} ms): {e}",
                result.latency_ms
            ))
        }
    }
    Ok(html(
        &page(&cp, &member, nav, NewDestination::default()).await?,
    ))
}

pub(super) async fn delete(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Path(raw): Path<String>,
    CheckedForm(_): CheckedForm<Button>,
) -> Page {
    cp.remove_destination(&member, id(&raw)?).await?;
    Ok(see_other("/telemetry?notice=deleted"))
}

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/telemetry", get(telemetry_page).post(add))
        .route("/telemetry/{id}/test", post(test))
        .route("/telemetry/{id}/delete", post(delete))
}
