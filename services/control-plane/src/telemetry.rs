//! The admin API of trace destinations (`/api/v1/telemetry/…`).
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/api/v1/telemetry/destinations` | list, with delivery status |
//! | POST | `/api/v1/telemetry/destinations` | create (201) |
//! | GET / PUT / DELETE | `/api/v1/telemetry/destinations/{id}` | read, replace, delete |
//! | POST | `/api/v1/telemetry/destinations/{id}/test` | send one test span now |
//! | GET | `/api/v1/telemetry/presets` | the vendor presets and their fields |

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use exporter::destination::DestinationInput;
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, CpError};
use crate::extract::ApiCaller;
use crate::ControlPlane;

type Reply = Result<Response, ApiError>;

/// The routes.
pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/api/v1/telemetry/destinations", get(list).post(create))
        .route(
            "/api/v1/telemetry/destinations/{id}",
            get(read).put(replace).delete(remove),
        )
        .route("/api/v1/telemetry/destinations/{id}/test", post(test))
        .route("/api/v1/telemetry/presets", get(presets))
}

fn input(json: Result<Json<DestinationInput>, JsonRejection>) -> Result<DestinationInput, CpError> {
    json.map(|Json(v)| v).map_err(|e| {
        CpError::BadInput(format!(
            "The JSON body could not be read: {}",
            e.body_text()
        ))
    })
}

fn id(raw: &str) -> Result<Uuid, CpError> {
    raw.parse().map_err(|_| CpError::NotFound)
}

async fn list(State(cp): State<Arc<ControlPlane>>, ApiCaller(m): ApiCaller) -> Reply {
    Ok(Json(json!({ "destinations": cp.destinations(&m).await? })).into_response())
}

async fn create(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    json: Result<Json<DestinationInput>, JsonRejection>,
) -> Reply {
    let saved = cp.save_destination(&m, None, &input(json)?).await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

async fn read(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(raw): Path<String>,
) -> Reply {
    Ok(Json(cp.destination(&m, id(&raw)?).await?).into_response())
}

async fn replace(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(raw): Path<String>,
    json: Result<Json<DestinationInput>, JsonRejection>,
) -> Reply {
    let id = id(&raw)?;
    Ok(Json(cp.save_destination(&m, Some(id), &input(json)?).await?).into_response())
}

async fn remove(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(raw): Path<String>,
) -> Reply {
    cp.remove_destination(&m, id(&raw)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn test(
    State(cp): State<Arc<ControlPlane>>,
    ApiCaller(m): ApiCaller,
    Path(raw): Path<String>,
) -> Reply {
    Ok(Json(cp.test_destination(&m, id(&raw)?).await?).into_response())
}

async fn presets(ApiCaller(_): ApiCaller) -> Json<serde_json::Value> {
    Json(json!({ "presets": [
        { "id": "axiom", "fields": ["token", "dataset", "region?"], "regions": ["us-east-1", "eu-central-1"] },
        { "id": "grafana", "fields": ["token", "instance", "region"], "region_means": "the stack's zone, such as prod-us-east-0" },
        { "id": "honeycomb", "fields": ["token", "dataset?", "region?"], "regions": ["us", "eu"] },
        { "id": "datadog", "fields": ["token", "region?", "instance?"], "region_means": "the Datadog site (default datadoghq.com)", "instance_means": "dd-otlp-source (default datadog)" },
    ]}))
}
