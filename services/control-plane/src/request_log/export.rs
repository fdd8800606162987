//! The filtered request log as one download, streamed: rows are read a
//! batch at a time by cursor and written as they come, so an export of
//! millions of rows holds one batch in memory. A read that fails mid-way
//! ends the response without its final chunk, so the client sees a broken
//! transfer, never a silently short file.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use events::AccountId;

use super::{Cursor, Filter, LogRow, EXPORT_BATCH};
use crate::error::CpError;
use crate::ControlPlane;

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header line, then one line per request (tags joined by `;`).
    Csv,
    /// One JSON array of the rows `GET /api/v1/requests` lists.
    Json,
}

impl Format {
    /// `csv` (the default) or `json`.
    pub fn parse(text: Option<&str>) -> Result<Format, CpError> {
        match text.unwrap_or("csv") {
            "" | "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(CpError::Invalid {
                param: "format",
                message: format!(
                    "`format` must be csv or json; `{}` was given.",
                    crate::echo(other)
                ),
            }),
        }
    }
}

/// Where the stream is.
enum Step {
    Start,
    After(Cursor),
    Done,
}

/// The response: a streamed body with a download file name.
pub fn export(
    cp: Arc<ControlPlane>,
    account: AccountId,
    filter: Filter,
    format: Format,
) -> Response {
    let chunks = futures_util::stream::unfold(Step::Start, move |step| {
        let (cp, filter) = (Arc::clone(&cp), filter.clone());
        async move {
            let (after, first) = match step {
                Step::Done => return None,
                Step::Start => (None, true),
                Step::After(after) => (Some(after), false),
            };
            let rows = match cp
                .request_rows(account, &filter, after.as_ref(), EXPORT_BATCH)
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "request log export broke off");
                    return Some((Err(std::io::Error::other(e.to_string())), Step::Done));
                }
            };
            let last = rows.len() < EXPORT_BATCH as usize;
            let next = match (last, rows.last()) {
                (false, Some(row)) => Step::After(row.cursor()),
                _ => Step::Done,
            };
            Some((Ok(Bytes::from(write(&rows, format, first, last))), next))
        }
    });
    let (kind, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "requests.csv"),
        Format::Json => ("application/json", "requests.json"),
    };
    (
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// One batch's text: the CSV header or the array's `[` before the first,
/// `]` after the last.
fn write(rows: &[LogRow], format: Format, first: bool, last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 256);
    match format {
        Format::Csv => {
            if first {
                out.extend_from_slice(LogRow::CSV_HEADER.as_bytes());
            }
            for row in rows {
                out.extend_from_slice(row.csv().as_bytes());
            }
        }
        Format::Json => {
            if first {
                out.push(b'[');
            }
            // A later batch follows a full one, so its rows all need a comma.
            for (i, row) in rows.iter().enumerate() {
                if !first || i > 0 {
                    out.push(b',');
                }
                // A row of strings and numbers always serializes.
                if let Ok(json) = serde_json::to_vec(row) {
                    out.extend_from_slice(&json);
                }
            }
            if last {
                out.push(b']');
            }
        }
    }
    out
}
