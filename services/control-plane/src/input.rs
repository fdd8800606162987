//! Reading what users type, for the pages and the admin API alike: USD
//! amounts and ranges of days.

use chrono::NaiveDate;
use money::Money;

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
