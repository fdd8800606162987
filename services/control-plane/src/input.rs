//! Reading what users type, for the pages and the admin API alike: USD
//! amounts, times, ranges of days and lists.

use chrono::{DateTime, NaiveDate, Utc};
use money::Money;
use serde_json::Value;

use crate::error::CpError;

/// Reads a USD amount typed into a form: empty means none.
pub fn parse_limit(text: &str) -> Result<Option<Money>, CpError> {
    let text = text.trim().trim_start_matches('$');
    if text.is_empty() {
        return Ok(None);
    }
    let limit: Money = text.parse().map_err(|_| {
        CpError::BadInput(format!(
            "`{}` is not an amount in USD, like 5 or 12.50.",
            crate::echo(text)
        ))
    })?;
    if limit < Money::ZERO {
        return Err(CpError::BadInput(
            "The daily limit cannot be negative.".into(),
        ));
    }
    Ok(Some(limit))
}

/// Reads a USD amount (`25`, `2.50`, `$10`) given as field `param`.
pub fn usd(text: &str, param: &'static str) -> Result<Money, CpError> {
    text.trim().trim_start_matches('$').parse().map_err(|_| {
        CpError::invalid(
            param,
            format!(
                "`{param}` is not an amount in USD, like 25 or 2.50; `{}` was given.",
                crate::echo(text)
            ),
        )
    })
}

/// Reads a time given as field `param`: RFC 3339, or a date (its start, UTC).
pub fn time(text: &str, param: &'static str) -> Result<DateTime<Utc>, CpError> {
    text.parse::<DateTime<Utc>>()
        .ok()
        .or_else(|| {
            text.parse::<NaiveDate>()
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
        .ok_or_else(|| {
            CpError::invalid(
                param,
                format!(
                    "`{param}` is not a time: give RFC 3339 (2026-12-04T10:00:00Z) or a date (2026-12-04); `{}` was given.",
                    crate::echo(text)
                ),
            )
        })
}

/// Reads a list given as field `param`: a JSON list, or text separated by
/// commas or lines (as a form sends it). Items are trimmed; empty ones drop.
pub fn list(value: &Option<Value>, param: &'static str) -> Result<Vec<String>, CpError> {
    let items: Vec<String> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s.split([',', '\n']).map(str::to_owned).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(_) => {
            return Err(CpError::invalid(
                param,
                format!("`{param}` must be a list."),
            ))
        }
    };
    Ok(items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Reads a `from`..`to` range of UTC days (at most ten years).
pub fn day_range(from: &str, to: &str) -> Result<(NaiveDate, NaiveDate), CpError> {
    let day = |text: &str, what: &str| {
        text.parse::<NaiveDate>().map_err(|_| {
            CpError::BadInput(format!(
                "`{}` is not a {what} date (YYYY-MM-DD).",
                crate::echo(text)
            ))
        })
    };
    let (from, to) = (day(from, "start")?, day(to, "end")?);
    if to < from || (to - from).num_days() > 3_660 {
        return Err(CpError::BadInput(
            "The range must run forwards and span at most ten years.".into(),
        ));
    }
    Ok((from, to))
}
