//! The exporter's tables: destinations it delivers to, each one's backlog
//! (usage events not yet delivered, oldest first) and delivery status.
//!
//! The backlog is what makes delivery per tenant: the event log is read
//! once, at its own pace, and each destination drains its own rows. A dead
//! backend's rows wait (up to its cap) while every other destination's
//! flow; they survive restarts because they are rows.

use events::{AccountId, TelemetryDestinationSet};
use sqlx::{Any, Row, Transaction};
use store::Store;
use uuid::Uuid;

/// One undelivered usage event of a destination.
pub struct Pending {
    /// Its row, in arrival order.
    pub id: i64,
    /// The usage envelope's JSON.
    pub event: String,
    /// The request's text (a `content_recorded` body), when captured.
    pub content: Option<String>,
}

/// How delivery to a destination stands, for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Requests delivered.
    pub exported: i64,
    /// Requests the backend refused (dropped).
    pub rejected: i64,
    /// Requests dropped because the backlog was full.
    pub dropped: i64,
    /// Requests waiting.
    pub backlog: i64,
    pub last_success_at: Option<String>,
    pub last_error_at: Option<String>,
    pub last_error: Option<String>,
}

/// Saves (or replaces) a destination.
pub async fn save(
    tx: &mut Transaction<'_, Any>,
    d: &TelemetryDestinationSet,
) -> Result<(), sqlx::Error> {
    let body = serde_json::to_string(d).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO export_destinations (id, account, body) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET account = excluded.account, body = excluded.body",
    )
    .bind(d.destination.to_string())
    .bind(d.account.to_string())
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a destination of `account`, its backlog and status.
pub async fn remove(
    tx: &mut Transaction<'_, Any>,
    account: AccountId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let gone = sqlx::query("DELETE FROM export_destinations WHERE id = $1 AND account = $2")
        .bind(id.to_string())
        .bind(account.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected()
        > 0;
    if gone {
        for table in [
            "DELETE FROM export_outbox WHERE destination = $1",
            "DELETE FROM export_status WHERE destination = $1",
        ] {
            sqlx::query(table)
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(gone)
}

/// Every saved destination (an unreadable body is skipped and logged).
pub async fn destinations(store: &Store) -> Result<Vec<TelemetryDestinationSet>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, body FROM export_destinations ORDER BY id")
        .fetch_all(&store.pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let body: String = row.try_get("body")?;
        match serde_json::from_str(&body) {
            Ok(d) => out.push(d),
            Err(e) => {
                tracing::error!(destination = %row.try_get::<String, _>("id")?, error = %e, "unreadable destination skipped")
            }
        }
    }
    Ok(out)
}

/// How long a usage event's id is remembered against replays.
pub const SEEN_FOR: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Rows one multi-row statement writes (well under SQLite's and
/// PostgreSQL's parameter limits).
const ROWS_PER_STATEMENT: usize = 400;

/// Notes usage events `ids`; the ones not noted before (the others are
/// replays).
pub async fn first_sightings(
    tx: &mut Transaction<'_, Any>,
    ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    let now = chrono::Utc::now().to_rfc3339();
    let mut fresh = std::collections::HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, $1)", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO export_seen (event_id, seen_at) VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            values.join(", ")
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(&now);
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for id in query.fetch_all(&mut **tx).await? {
            if let Ok(id) = id.parse() {
                fresh.insert(id);
            }
        }
    }
    Ok(fresh)
}

/// Forgets sightings older than [`SEEN_FOR`].
pub async fn forget_sightings(store: &Store) -> Result<u64, sqlx::Error> {
    let before = (chrono::Utc::now() - SEEN_FOR).to_rfc3339();
    Ok(sqlx::query("DELETE FROM export_seen WHERE seen_at < $1")
        .bind(before)
        .execute(&store.pool)
        .await?
        .rows_affected())
}

/// Adds usage events to destinations' backlogs: (destination, event JSON,
/// the request's text for a destination that captures it).
pub async fn push_all(
    tx: &mut Transaction<'_, Any>,
    rows: &[(Uuid, &str, Option<&str>)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO export_outbox (destination, event, content) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (destination, event, content) in chunk {
            query = query
                .bind(destination.to_string())
                .bind(*event)
                .bind(content.map(str::to_owned));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The oldest `limit` events of a destination's backlog.
pub async fn oldest(
    store: &Store,
    destination: Uuid,
    limit: usize,
) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, event, content FROM export_outbox WHERE destination = $1 ORDER BY id LIMIT $2",
    )
    .bind(destination.to_string())
    .bind(limit as i64)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Pending {
                id: r.try_get("id")?,
                event: r.try_get("event")?,
                content: r.try_get("content")?,
            })
        })
        .collect()
}

/// Removes a destination's backlog up to and including row `last`.
pub async fn take(store: &Store, destination: Uuid, last: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM export_outbox WHERE destination = $1 AND id <= $2")
            .bind(destination.to_string())
            .bind(last)
            .execute(&store.pool)
            .await?
            .rows_affected(),
    )
}

/// Drops the oldest of a destination's backlog beyond `keep` events; how many.
pub async fn trim(store: &Store, destination: Uuid, keep: usize) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM export_outbox WHERE destination = $1 AND id <= (
             SELECT id FROM export_outbox WHERE destination = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
    )
    .bind(destination.to_string())
    .bind(keep as i64)
    .execute(&store.pool)
    .await?
    .rows_affected())
}

/// Each destination's backlog size.
pub async fn backlogs(store: &Store) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT destination, COUNT(*) AS n FROM export_outbox GROUP BY destination")
            .fetch_all(&store.pool)
            .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("destination")?;
        if let Ok(id) = id.parse() {
            out.push((id, row.try_get("n")?));
        }
    }
    Ok(out)
}

/// What happened to a batch, for [`record`].
pub enum Outcome<'a> {
    Exported(i64),
    Rejected(i64, &'a str),
    Failed(&'a str),
    Dropped(i64),
}

/// Adds a batch's outcome to a destination's status.
pub async fn record(
    store: &Store,
    destination: Uuid,
    outcome: Outcome<'_>,
) -> Result<(), sqlx::Error> {
    let now = chrono::Utc::now().to_rfc3339();
    let (exported, rejected, dropped, error) = match outcome {
        Outcome::Exported(n) => (n, 0, 0, None),
        Outcome::Rejected(n, e) => (0, n, 0, Some(e)),
        Outcome::Failed(e) => (0, 0, 0, Some(e)),
        Outcome::Dropped(n) => (0, 0, n, None),
    };
    let success = (exported > 0).then(|| now.clone());
    let error_at = error.map(|_| now.clone());
    sqlx::query(
        "INSERT INTO export_status (destination, exported, rejected, dropped, last_success_at, last_error_at, last_error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (destination) DO UPDATE SET
           exported = export_status.exported + excluded.exported,
           rejected = export_status.rejected + excluded.rejected,
           dropped = export_status.dropped + excluded.dropped,
           last_success_at = COALESCE(excluded.last_success_at, export_status.last_success_at),
           last_error_at = COALESCE(excluded.last_error_at, export_status.last_error_at),
           last_error = COALESCE(excluded.last_error, export_status.last_error)",
    )
    .bind(destination.to_string())
    .bind(exported)
    .bind(rejected)
    .bind(dropped)
    .bind(success)
    .bind(error_at)
    .bind(error)
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// A destination's status with its current backlog.
pub async fn status(store: &Store, destination: Uuid) -> Result<Status, sqlx::Error> {
    let id = destination.to_string();
    let backlog: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM export_outbox WHERE destination = $1")
            .bind(&id)
            .fetch_one(&store.pool)
            .await?;
    let row = sqlx::query(
        "SELECT exported, rejected, dropped, last_success_at, last_error_at, last_error FROM export_status WHERE destination = $1",
    )
    .bind(&id)
    .fetch_optional(&store.pool)
    .await?;
    let Some(row) = row else {
        return Ok(Status {
            backlog,
            ..Status::default()
        });
    };
    Ok(Status {
        exported: row.try_get("exported")?,
        rejected: row.try_get("rejected")?,
        dropped: row.try_get("dropped")?,
        backlog,
        last_success_at: row.try_get("last_success_at")?,
        last_error_at: row.try_get("last_error_at")?,
        last_error: row.try_get("last_error")?,
    })
}
