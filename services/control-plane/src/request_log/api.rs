//! The request log on the admin API, for any member of the account:
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/api/v1/requests` | one page: `{"data": [...], "next_cursor"}` |
//! | GET | `/api/v1/requests/export` | the whole filtered set, streamed (`format=csv` or `json`) |
//! | GET | `/api/v1/requests/{request_id}` | one request: attempts, timings, `auto`'s reasons |
//! | GET | `/api/v1/usage/breakdown` | requests, spend and tokens per `by` group (see `analytics`) |
//!
//! Filters (query string, all optional): `from`, `to`, `key`, `model`,
//! `provider`, `tier`, `kind`, `outcome`, `min_cost`, `request_id`, `tag`,
//! `user`; paging: `limit` (1–500, default 50) and `cursor`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use serde_json::json;

use super::export::{export, Format};
use super::FilterInput;
use crate::analytics::{self, GroupBy};
use crate::error::{ApiError, CpError};
use crate::extract::ApiCaller;
use crate::ControlPlane;

/// The routes.
pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/api/v1/requests", get(list))
        .route("/api/v1/requests/export", get(download))
        .route("/api/v1/requests/{request_id}", get(detail))
        .route("/api/v1/usage/breakdown", get(breakdown))
}

/// The query string, or a clear error naming what is wrong with it.
pub(crate) fn query(
    query: Result<Query<FilterInput>, QueryRejection>,
) -> Result<FilterInput, CpError> {
    query.map(|Query(q)| q).map_err(|e| {
        CpError::BadInput(format!(
            "The query string could not be read: {}",
            e.body_text()
        ))
    })
}

async fn list(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    input: Result<Query<FilterInput>, QueryRejection>,
) -> Result<Response, ApiError> {
    let input = query(input)?;
    let page = cp
        .request_page(
            m.account,
            &input.filter()?,
            input.cursor()?.as_ref(),
            input.limit()?,
        )
        .await?;
    Ok(Json(page).into_response())
}

async fn download(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    input: Result<Query<FilterInput>, QueryRejection>,
) -> Result<Response, ApiError> {
    let input = query(input)?;
    let format = Format::parse(input.format.as_deref())?;
    Ok(export(cp, m.account, input.filter()?, format))
}

/// `GET /api/v1/usage/breakdown?by=…&<filters>`: sums per group and in all.
async fn breakdown(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    input: Result<Query<FilterInput>, QueryRejection>,
) -> Result<Response, ApiError> {
    let input = query(input)?;
    let by = GroupBy::parse(input.by.as_deref())?;
    let groups = cp.breakdown(m.account, &input.filter()?, by).await?;
    let total = analytics::total(&groups);
    Ok(Json(json!({"by": by, "groups": groups, "total": total})).into_response())
}

async fn detail(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(request_id): Path<String>,
) -> Result<Response, ApiError> {
    let body = crate::lookup::recorded(&cp, m.account, &request_id).await?;
    Ok(Json(body).into_response())
}
