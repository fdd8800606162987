//! The journal as CSV, for finance: one row per line, amounts as exact
//! decimal USD.

use std::io::Write;

use chrono::NaiveDate;
use money::Money;
use sqlx::Row;
use store::Store;

use crate::LedgerError;

/// The CSV header.
pub const HEADER: &str = "at,event_id,line,book,account,debit,credit,memo";

/// Writes the journal lines of UTC days `from` to `to` (both included),
/// of every account or of `account` only (its own events' lines, the
/// platform's books included, as a customer's statement shows them).
pub async fn export(
    store: &Store,
    account: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
    out: &mut impl Write,
) -> Result<usize, LedgerError> {
    let end = to.succ_opt().unwrap_or(to);
    let rows = sqlx::query(
        "SELECT at, event_id, line, book, account, debit, credit, memo FROM journal
         WHERE at >= $1 AND at < $2 AND ($3 = '' OR account = $3) ORDER BY at, event_id, line",
    )
    .bind(from.to_string())
    .bind(end.to_string())
    .bind(account.unwrap_or(""))
    .fetch_all(&store.pool)
    .await?;
    let io = |e: std::io::Error| LedgerError::Data(format!("writing CSV: {e}"));
    writeln!(out, "{HEADER}").map_err(io)?;
    for row in &rows {
        let line: i32 = row.try_get("line")?;
        writeln!(
            out,
            "{},{},{line},{},{},{},{},{}",
            row.try_get::<String, _>("at")?,
            row.try_get::<String, _>("event_id")?,
            row.try_get::<String, _>("book")?,
            row.try_get::<String, _>("account")?,
            Money::from_nanos(row.try_get("debit")?),
            Money::from_nanos(row.try_get("credit")?),
            csv_field(&row.try_get::<String, _>("memo")?),
        )
        .map_err(io)?;
    }
    Ok(rows.len())
}

/// A field quoted when it holds a comma, a quote or a line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_with_separators_are_quoted() {
        assert_eq!(super::csv_field("plain"), "plain");
        assert_eq!(super::csv_field("a,b"), "\"a,b\"");
        assert_eq!(super::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
