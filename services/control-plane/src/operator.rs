//! The deployment's health, for its operators: every gateway with its
//! usage journal (events not yet in the log, as it last reported), the
//! numbers of its sequence the ledger never received, and log records the
//! ledger could not read. Lost usage shows here, not only in `reconcile`.

use std::collections::BTreeMap;

use chrono::Utc;
use events::{GatewayStatus, GATEWAYS_BUCKET};
use serde::Serialize;
use sqlx::Row;

use crate::error::CpError;
use crate::queries::short_time;
use crate::ControlPlane;

/// A gateway that has not reported for this long has stopped.
const STOPPED_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// One gateway.
#[derive(Debug, Serialize)]
pub struct GatewayRow {
    pub gateway: String,
    /// When it last reported (empty: it never reached the log's status bucket).
    pub seen_at: String,
    pub stopped: bool,
    pub data_dir: String,
    /// Events in its journal the log has not taken.
    pub journal_events: u64,
    pub journal_bytes: u64,
    /// Events the log refused even slimmed, kept aside in its journal.
    pub set_aside: u64,
    /// Events neither its journal nor its memory could keep.
    pub lost: u64,
    /// The highest number of its sequence the ledger applied, and how many events.
    pub max_seq: i64,
    pub events_applied: i64,
    /// Numbers whose requests must have ended, still without an event
    /// (the ledger's check; see `modelrouter reconcile` for which).
    pub missing: i64,
    pub checked_at: String,
}

/// What the operator page shows.
#[derive(Debug, Serialize)]
pub struct OperatorView {
    pub gateways: Vec<GatewayRow>,
    /// Log records the ledger could not read (a newer build wrote them?).
    pub rejected_events: i64,
    /// Anything that needs an operator: a missing number, usage held by a
    /// stopped gateway, set aside or lost, an unreadable record.
    pub attention: bool,
}

impl ControlPlane {
    /// The deployment's health (see the module).
    pub async fn operator_view(&self) -> Result<OperatorView, CpError> {
        let mut rows: BTreeMap<String, GatewayRow> = BTreeMap::new();
        let blank = |gateway: &str| GatewayRow {
            gateway: gateway.to_owned(),
            seen_at: String::new(),
            stopped: true,
            data_dir: String::new(),
            journal_events: 0,
            journal_bytes: 0,
            set_aside: 0,
            lost: 0,
            max_seq: 0,
            events_applied: 0,
            missing: 0,
            checked_at: String::new(),
        };
        let now = Utc::now();
        for entry in self.log.bucket(GATEWAYS_BUCKET).await?.snapshot().await? {
            let Ok(status) = serde_json::from_slice::<GatewayStatus>(&entry.value) else {
                continue;
            };
            let row = rows
                .entry(status.gateway.clone())
                .or_insert_with(|| blank(&status.gateway));
            row.seen_at = short_time(&status.seen_at.to_rfc3339());
            row.stopped = now - status.seen_at > STOPPED_AFTER;
            row.data_dir = status.data_dir;
            row.journal_events = status.journal_events;
            row.journal_bytes = status.journal_bytes;
            row.set_aside = status.set_aside;
            row.lost = status.lost;
        }
        for r in sqlx::query(
            "SELECT gateway, max_seq, events, missing, checked_at FROM gateway_sequences ORDER BY gateway",
        )
        .fetch_all(&self.store.pool)
        .await?
        {
            let gateway: String = r.try_get("gateway")?;
            let row = rows
                .entry(gateway.clone())
                .or_insert_with(|| blank(&gateway));
            row.max_seq = r.try_get("max_seq")?;
            row.events_applied = r.try_get("events")?;
            row.missing = r.try_get("missing")?;
            row.checked_at = r
                .try_get::<Option<String>, _>("checked_at")?
                .map(|t| short_time(&t))
                .unwrap_or_default();
        }
        let rejected_events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rejected_events")
            .fetch_one(&self.store.pool)
            .await?;
        let gateways: Vec<GatewayRow> = rows.into_values().collect();
        let attention = rejected_events > 0
            || gateways.iter().any(|g| {
                g.missing > 0
                    || g.set_aside > 0
                    || g.lost > 0
                    || (g.stopped && g.journal_events > 0)
            });
        Ok(OperatorView {
            gateways,
            rejected_events,
            attention,
        })
    }
}
