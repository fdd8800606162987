//! The request log pages: `/requests` (filters, a page of rows, links to the
//! next page and to the filtered set's CSV and JSON) and
//! `/requests/{request_id}` (one request: attempts with their errors,
//! timings, `auto`'s reasons, attribution). Any member may read them.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::{html, Nav, Page};
use crate::extract::{Csrf, Signed};
use crate::request_log::export::{export, Format};
use crate::request_log::{FilterInput, LogRow};
use crate::ControlPlane;

/// A filter form's field as shown: (name, label, value).
pub(super) type Field = (&'static str, &'static str, String);

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    nav: Nav,
    fields: Vec<Field>,
    rows: Vec<LogRow>,
    next: Option<String>,
    query: String,
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    nav: Nav,
    id: String,
    /// (label, value) pairs of the summary.
    summary: Vec<(&'static str, String)>,
    attempts: Vec<Attempt>,
    reasons: Vec<(String, i64)>,
    tags: Vec<String>,
}

/// One attempt as the detail page lists it.
struct Attempt {
    provider: String,
    model: String,
    status: String,
    error: String,
    latency_ms: String,
    skipped: bool,
}

/// The log's filters as its form shows them, in order (`/usage` shows
/// some of them).
pub(super) fn fields(f: &FilterInput) -> Vec<Field> {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    vec![
        ("from", "From (UTC)", v(&f.from)),
        ("to", "To", v(&f.to)),
        ("key", "Key id", v(&f.key)),
        ("model", "Model", v(&f.model)),
        ("provider", "Provider", v(&f.provider)),
        ("tier", "Tier", v(&f.tier)),
        ("outcome", "Outcome", v(&f.outcome)),
        ("min_cost", "Min cost (USD)", v(&f.min_cost)),
        ("request_id", "Request id", v(&f.request_id)),
        ("tag", "Tag", v(&f.tag)),
        ("user", "User", v(&f.user)),
    ]
}

/// The filters as a query string (empty ones left out), for links.
pub(super) fn query_string(fields: &[Field], extra: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, _, value) in fields.iter().filter(|f| !f.2.is_empty()) {
        out.append_pair(name, value);
    }
    for (name, value) in extra {
        out.append_pair(name, value);
    }
    out.finish()
}

async fn list(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    input: Result<Query<FilterInput>, QueryRejection>,
) -> Page {
    let mut nav = Nav::new(&member, csrf, "requests");
    let input = crate::request_log::api::query(input);
    let shown = fields(input.as_ref().unwrap_or(&FilterInput::default()));
    let read = async {
        let input = input?;
        let page = cp
            .request_page(
                member.account,
                &input.filter()?,
                input.cursor()?.as_ref(),
                input.limit()?,
            )
            .await?;
        Ok::<_, crate::error::CpError>(page)
    };
    let (rows, next) = match read.await {
        Ok(page) => {
            let next = page
                .next_cursor
                .map(|c| format!("/requests?{}", query_string(&shown, &[("cursor", &c)])));
            (page.data, next)
        }
        Err(e @ (crate::error::CpError::Invalid { .. } | crate::error::CpError::BadInput(_))) => {
            nav.error = Some(e.public_message());
            (Vec::new(), None)
        }
        Err(e) => return Err(e.into()),
    };
    Ok(html(&RequestsPage {
        query: query_string(&shown, &[]),
        nav,
        fields: shown,
        rows,
        next,
    }))
}

/// `/requests/export.csv` and `.json`: the downloads the page links to.
async fn download(
    cp: Arc<ControlPlane>,
    member: crate::ops::Member,
    input: Result<Query<FilterInput>, QueryRejection>,
    format: Format,
) -> Page {
    let input = crate::request_log::api::query(input)?;
    Ok(export(cp, member.account, input.filter()?, format).into_response())
}

async fn csv(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    input: Result<Query<FilterInput>, QueryRejection>,
) -> Page {
    download(cp, member, input, Format::Csv).await
}

async fn json(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    input: Result<Query<FilterInput>, QueryRejection>,
) -> Page {
    download(cp, member, input, Format::Json).await
}

async fn detail(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    Path(id): Path<String>,
) -> Page {
    let event = crate::lookup::recorded(&cp, member.account, &id).await?;
    let s = |v: &Value| match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let summary = vec![
        ("Recorded (UTC)", s(&event["recorded_at"])),
        ("Key", s(&event["key"])),
        ("Kind", s(&event["kind"])),
        ("Model", s(&event["model"])),
        ("Provider", s(&event["provider"])),
        ("Tier", s(&event["tier"])),
        ("Prefer", s(&event["prefer"])),
        ("Auto score", s(&event["auto"]["score"])),
        ("Input tokens", s(&event["tokens"]["input"])),
        ("Cached input tokens", s(&event["tokens"]["cached_input"])),
        ("Output tokens", s(&event["tokens"]["output"])),
        ("Cost (USD)", s(&event["cost"])),
        ("Free model", s(&event["free"])),
        ("Latency (ms)", s(&event["timings"]["total_ms"])),
        ("First byte (ms)", s(&event["timings"]["first_byte_ms"])),
        ("Outcome", s(&event["outcome"])),
        ("Finish reasons", s(&event["finish_reasons"])),
        ("User", s(&event["user"])),
    ];
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut attempts: Vec<Attempt> = list(&event["attempts"])
        .iter()
        .map(|a| Attempt {
            provider: s(&a["provider"]),
            model: s(&a["model"]),
            status: s(&a["status"]),
            error: s(&a["error"]),
            latency_ms: format!("{} ms", s(&a["latency_ms"])),
            skipped: a["skipped"].as_bool().unwrap_or(false),
        })
        .collect();
    // The event lists the attempts before the one that answered; that one
    // is the request's model and provider.
    if event["outcome"] != "failed" {
        attempts.push(Attempt {
            provider: s(&event["provider"]),
            model: s(&event["model"]),
            status: "answered".into(),
            error: String::new(),
            latency_ms: "—".into(),
            skipped: false,
        });
    }
    let reasons = list(&event["auto"]["contributions"])
        .iter()
        .map(|c| (s(&c[0]), c[1].as_i64().unwrap_or(0)))
        .collect();
    let tags = list(&event["tags"]).iter().map(s).collect();
    Ok(html(&RequestPage {
        nav: Nav::new(&member, csrf, "requests"),
        id,
        summary,
        attempts,
        reasons,
        tags,
    }))
}

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/requests", get(list))
        .route("/requests/{id}", get(detail))
        .route("/requests/export.csv", get(csv))
        .route("/requests/export.json", get(json))
}
