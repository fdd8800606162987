//! The request log on the admin API, for any member of the account:
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/api/v1/requests` | one page: `{"data": [...], "next_cursor"}` |
//! | GET | `/api/v1/requests/export` | the whole filtered set, streamed (`format=csv` or `json`) |
//! | GET | `/api/v1/requests/{request_id}` | one request: attempts, timings, `auto`'s reasons |
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

use super::export::{export, Format};
use super::FilterInput;
use crate::error::{ApiError, CpError};
use crate::extract::ApiCaller;
use crate::ControlPlane;

/// The routes.
pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/api/v1/requests", get(list))
        .route("/api/v1/requests/export", get(download))
        .route("/api/v1/requests/{request_id}", get(detail))
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

async fn detail(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(request_id): Path<String>,
) -> Result<Response, ApiError> {
    let body = crate::lookup::recorded(&cp, m.account, &request_id).await?;
    Ok(Json(body).into_response())
}
