//! Trace destinations: where an account's request traces go. Owners only
//! (a destination receives every request's details). Header values are
//! sealed before they leave this process and never shown again.

use std::time::{Duration, Instant};

use events::{Event, TelemetryDestinationRemoved};
use exporter::client::{Client, Target};
use exporter::destination::{DestinationInput, FieldError};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::Member;
use crate::error::CpError;
use crate::ControlPlane;

/// How long "send test span" waits for the backend.
pub const TEST_SPAN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most destinations one account may have.
pub const MAX_DESTINATIONS: i64 = 10;

/// A destination as listed: never its header values.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationView {
    pub id: String,
    pub name: String,
    pub preset: Option<String>,
    pub protocol: String,
    pub endpoint: String,
    pub header_names: Vec<String>,
    pub sampling: serde_json::Value,
    /// Prompt and completion text are added to its spans.
    pub capture_content: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Delivery as the exporter reports it.
    pub status: exporter::outbox::Status,
}

impl DestinationView {
    /// The sampling as the dashboard says it.
    pub fn sampling_text(&self) -> String {
        match self.sampling["mode"].as_str() {
            Some("errors_only") => "failed or broken off only".into(),
            Some("ratio") => format!(
                "{}% of requests",
                self.sampling["ratio"].as_f64().unwrap_or(0.0) * 100.0
            ),
            _ => "all".into(),
        }
    }
}

/// What "send test span" found.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub ok: bool,
    pub latency_ms: u64,
    pub error: Option<String>,
}

impl From<FieldError> for CpError {
    fn from(e: FieldError) -> Self {
        CpError::Invalid {
            param: e.field,
            message: e.message,
        }
    }
}

impl ControlPlane {
    fn sealer(&self) -> Result<&exporter::Sealer, CpError> {
        self.sealer.as_deref().ok_or_else(|| {
            CpError::Unavailable(
                "Trace export is not configured on this deployment (no telemetry secret).".into(),
            )
        })
    }

    /// Creates a destination, or with `id` replaces one of the account's.
    pub async fn save_destination(
        &self,
        member: &Member,
        id: Option<Uuid>,
        input: &DestinationInput,
    ) -> Result<DestinationView, CpError> {
        member.require_owner()?;
        let checked = input.check()?;
        match id {
            Some(id) => {
                self.destination_row(member, id).await?;
            }
            None => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM telemetry_destinations WHERE account = $1",
                )
                .bind(member.account.to_string())
                .fetch_one(&self.store.pool)
                .await?;
                if count >= MAX_DESTINATIONS {
                    return Err(CpError::Conflict(format!("An account has at most {MAX_DESTINATIONS} trace destinations; delete one first.")));
                }
            }
        }
        let event = checked
            .into_event(self.sealer()?, member.account, id, Some(member.user))
            .map_err(|e| CpError::Internal(e.to_string()))?;
        let destination = event.destination;
        self.record(Event::TelemetryDestinationSet(event)).await?;
        self.destination(member, destination).await
    }

    /// Deletes one of the account's destinations (and its backlog).
    pub async fn remove_destination(&self, member: &Member, id: Uuid) -> Result<(), CpError> {
        member.require_owner()?;
        self.destination_row(member, id).await?;
        self.record(Event::TelemetryDestinationRemoved(
            TelemetryDestinationRemoved {
                account: member.account,
                destination: id,
                by: Some(member.user),
            },
        ))
        .await?;
        Ok(())
    }

    /// The account's destinations, oldest first.
    pub async fn destinations(&self, member: &Member) -> Result<Vec<DestinationView>, CpError> {
        member.require_owner()?;
        let rows = sqlx::query(
            "SELECT * FROM telemetry_destinations WHERE account = $1 ORDER BY created_at, id",
        )
        .bind(member.account.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.view(&row).await?);
        }
        Ok(out)
    }

    /// One of the account's destinations.
    pub async fn destination(&self, member: &Member, id: Uuid) -> Result<DestinationView, CpError> {
        member.require_owner()?;
        let row = self.destination_row(member, id).await?;
        self.view(&row).await
    }

    /// Sends one span to the destination now and reports what the backend
    /// said (at most [`TEST_SPAN_TIMEOUT`]).
    pub async fn test_destination(&self, member: &Member, id: Uuid) -> Result<TestResult, CpError> {
        member.require_owner()?;
        let row = self.destination_row(member, id).await?;
        let sealed: String = row.try_get("headers_sealed")?;
        let headers = self
            .sealer()?
            .open(&sealed)
            .map_err(|e| CpError::Internal(e.to_string()))?;
        let protocol: String = row.try_get("protocol")?;
        let target = Target {
            protocol: events::Protocol::parse(&protocol)
                .ok_or_else(|| CpError::Internal(format!("protocol `{protocol}`")))?,
            endpoint: row.try_get("endpoint")?,
            headers,
        };
        let started = Instant::now();
        let client = exporter::client::http(TEST_SPAN_TIMEOUT)
            .and_then(|http| Client::new(&target, TEST_SPAN_TIMEOUT, &http));
        let result = match client {
            Ok(client) => client
                .export(vec![exporter::spans::test_span(member.account, id)])
                .await
                .map_err(|e| e.message().to_owned()),
            Err(e) => Err(e),
        };
        Ok(TestResult {
            ok: result.is_ok(),
            latency_ms: started.elapsed().as_millis() as u64,
            error: result.err(),
        })
    }

    async fn destination_row(
        &self,
        member: &Member,
        id: Uuid,
    ) -> Result<sqlx::any::AnyRow, CpError> {
        sqlx::query("SELECT * FROM telemetry_destinations WHERE account = $1 AND id = $2")
            .bind(member.account.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.store.pool)
            .await?
            .ok_or(CpError::NotFound)
    }

    async fn view(&self, row: &sqlx::any::AnyRow) -> Result<DestinationView, CpError> {
        let id: String = row.try_get("id")?;
        let uuid: Uuid = id
            .parse()
            .map_err(|e| CpError::Internal(format!("destination id: {e}")))?;
        let names: String = row.try_get("header_names")?;
        let sampling: String = row.try_get("sampling")?;
        Ok(DestinationView {
            name: row.try_get("name")?,
            preset: row.try_get("preset")?,
            protocol: row.try_get("protocol")?,
            endpoint: row.try_get("endpoint")?,
            header_names: serde_json::from_str(&names).unwrap_or_default(),
            sampling: serde_json::from_str(&sampling).unwrap_or(serde_json::Value::Null),
            capture_content: row.try_get::<i64, _>("capture_content")? != 0,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            status: exporter::outbox::status(&self.store, uuid).await?,
            id,
        })
    }
}
