//! The usage page: requests and spend over a range, by day, hour, model,
//! provider, key, tag or end user, as a chart (time groupings) and a table
//! with each group's share, with the request log's filters. The range is
//! the last 7 UTC days unless the form says otherwise.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use chrono::{Days, Utc};

use super::requests::Field;
use super::{html, Nav, Page};
use crate::analytics::{self, Group, GroupBy};
use crate::chart::{self, Day};
use crate::error::CpError;
use crate::extract::{Csrf, Signed};
use crate::request_log::FilterInput;
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    nav: Nav,
    fields: Vec<Field>,
    by: &'static str,
    groupings: [&'static str; 7],
    chart: Option<String>,
    /// Each group and its share of the largest spend, in percent.
    groups: Vec<(Group, u32)>,
    total: Group,
    log_query: String,
}

/// The form's values, with the default range filled in.
fn with_defaults(mut input: FilterInput) -> FilterInput {
    let today = Utc::now().date_naive();
    if input.from.as_deref().unwrap_or_default().is_empty() {
        input.from = today.checked_sub_days(Days::new(6)).map(|d| d.to_string());
    }
    if input.to.as_deref().unwrap_or_default().is_empty() {
        input.to = today.checked_add_days(Days::new(1)).map(|d| d.to_string());
    }
    input
}

/// The log's filters this page's form shows.
const SHOWN: [&str; 7] = ["from", "to", "key", "model", "provider", "tag", "user"];

fn fields(f: &FilterInput) -> Vec<Field> {
    super::requests::fields(f)
        .into_iter()
        .filter(|(name, _, _)| SHOWN.contains(name))
        .collect()
}

async fn usage(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    input: Result<Query<FilterInput>, QueryRejection>,
) -> Page {
    let mut nav = Nav::new(&member, csrf, "usage");
    let input = crate::request_log::api::query(input).map(with_defaults);
    let shown = input
        .as_ref()
        .map_or_else(|_| with_defaults(FilterInput::default()), Clone::clone);
    let by = GroupBy::parse(shown.by.as_deref()).unwrap_or(GroupBy::Day);
    let read = async {
        let input = input?;
        let by = GroupBy::parse(input.by.as_deref())?;
        cp.breakdown(member.account, &input.filter()?, by).await
    };
    let groups = match read.await {
        Ok(groups) => groups,
        Err(e @ (CpError::Invalid { .. } | CpError::BadInput(_))) => {
            nav.error = Some(e.public_message());
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let chart = (by.is_time() && !groups.is_empty()).then(|| {
        let points: Vec<Day> = groups
            .iter()
            .map(|g| Day {
                // `MM-DD` by day, `DD HH` by hour: digits only.
                label: match by {
                    GroupBy::Hour => g.group.get(8..13).unwrap_or_default().replace('T', " "),
                    _ => g.group.get(5..10).unwrap_or_default().to_owned(),
                },
                requests: g.requests.max(0) as u64,
                spent_nanos: g.cost.nanos(),
            })
            .collect();
        chart::svg(&points)
    });
    let most = groups
        .iter()
        .map(|g| g.cost.nanos())
        .max()
        .unwrap_or(0)
        .max(1);
    let total = analytics::total(&groups);
    let log_fields = fields(&shown);
    let log_query = super::requests::query_string(&log_fields, &[]);
    Ok(html(&UsagePage {
        nav,
        fields: log_fields,
        by: by.as_str(),
        groupings: GroupBy::ALL.map(GroupBy::as_str),
        chart,
        groups: groups
            .into_iter()
            .map(|g| {
                let share = (g.cost.nanos().max(0) as f64 / most as f64 * 100.0).round() as u32;
                (g, share)
            })
            .collect(),
        total,
        log_query,
    }))
}

/// This page's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route("/usage", get(usage))
}
