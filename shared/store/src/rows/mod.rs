//! Set-based statements for both backends: many rows in one `INSERT` and
//! many keys in one `WHERE … IN (…)`, so a batch costs a few round trips
//! instead of one per row.
//!
//! sqlx's `QueryBuilder` cannot serve here: for the `Any` driver it writes
//! `?` placeholders, which PostgreSQL does not read. So each backend gets
//! the statement it runs best:
//! - PostgreSQL: one parameter per column. [`Rows`] writes
//!   `INSERT … SELECT * FROM UNNEST(…)` and [`fetch_in`]
//!   `… IN (SELECT UNNEST(…))`, each column bound as one text that the
//!   statement splits (see `rows/columns.rs`). The statement's text is the same
//!   whatever the number of rows, so the server parses it once per
//!   connection; a `VALUES` list is a new statement for every batch size,
//!   and binding its 22,000 parameters for a thousand request rows took
//!   the server 4–5 ms of a 25 ms insert.
//! - SQLite: `VALUES (?, ?), (?, ?)` and `IN ($1, …)` lists, in statements
//!   of a power of two rows or keys (at most [`MAX_PARAMETERS`] parameters,
//!   SQLite's limit being 32,766, and [`IN_KEYS`] keys). A statement's text
//!   is then one of a dozen per table, which the connection keeps prepared:
//!   cut only at the limit, every batch size was a new text, and parsing
//!   the thousands of placeholders of a saturated ledger's batches took 5%
//!   of `up`'s CPU. A batch of n rows costs as many statements as n has
//!   bits set; an `IN` list repeats its last key up to the power of two.
//!   An `INSERT` runs as `INSERT OR FAIL` there (see [`Rows`]).

mod columns;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::Arguments;

/// Parameters one statement binds at most.
pub const MAX_PARAMETERS: usize = 30_000;

/// Keys one `IN (…)` list holds at most (SQLite's, and PostgreSQL's when
/// its keys leave no separator free). Its parameters are numbered (the
/// fixed ones come first in the head), and SQLite finds
/// each numbered parameter's name by walking a list: a thousand keys keep
/// that walk short; a batch's accounts rarely need more than one statement.
pub const IN_KEYS: usize = 1_024;

/// What [`sqlx::AnyConnection::backend_name`] says of SQLite.
const SQLITE: &str = "SQLite";
/// How every [`Rows`] head starts, and what SQLite runs instead.
const INSERT: &str = "INSERT INTO ";
const INSERT_OR_FAIL: &str = "INSERT OR FAIL INTO ";

/// One bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    MaybeInt(Option<i64>),
    MaybeText(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        Value::MaybeInt(v)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        Value::MaybeText(v)
    }
}

fn bind(args: &mut AnyArguments<'_>, value: Value) -> Result<(), sqlx::Error> {
    match value {
        Value::Int(v) => args.add(v),
        Value::Text(v) => args.add(v),
        Value::MaybeInt(v) => args.add(v),
        Value::MaybeText(v) => args.add(v),
    }
    .map_err(sqlx::Error::Encode)
}

/// A multi-row `INSERT`: `head` (`INSERT INTO t (a, b)`), then `VALUES`
/// with one tuple per pushed row, then `tail` (`ON CONFLICT …`,
/// `RETURNING …`), run as few statements as the parameter limit allows.
///
/// It runs only in a transaction, which the caller rolls back when it
/// fails: on SQLite the `INSERT` becomes `INSERT OR FAIL`, and a statement
/// that fails keeps the rows it wrote before the failing one until that
/// rollback. In exchange SQLite does not copy every page the statement
/// touches into a statement journal to undo it alone (16% of the ledger's
/// SQLite instructions, `docs/PERFORMANCE.md`). The `tail`'s `ON CONFLICT`
/// still decides its own conflicts.
#[derive(Debug)]
pub struct Rows {
    head: &'static str,
    tail: &'static str,
    width: usize,
    values: Vec<Value>,
}

impl Rows {
    /// Rows of `width` values for `head … VALUES … tail`.
    pub fn new(head: &'static str, width: usize, tail: &'static str) -> Rows {
        assert!(
            width > 0 && width <= MAX_PARAMETERS,
            "a row binds 1 to {MAX_PARAMETERS} values"
        );
        assert!(head.starts_with(INSERT), "a head starts `{INSERT}`: {head}");
        Rows {
            head,
            tail,
            width,
            values: Vec::new(),
        }
    }

    /// Adds a row; it must have the statement's width.
    pub fn push<const N: usize>(&mut self, row: [Value; N]) {
        assert_eq!(
            N, self.width,
            "a row of {N} values for {} columns",
            self.width
        );
        self.values.extend(row);
    }

    /// How many rows are pushed.
    pub fn len(&self) -> usize {
        self.values.len() / self.width
    }

    /// Whether no row is pushed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Runs the statements in `tx`; returns how many rows they changed
    /// (an `ON CONFLICT DO NOTHING` counts only the rows it wrote). No row,
    /// no statement. On an error, roll `tx` back (see [`Rows`]).
    pub async fn execute(self, tx: &mut Transaction<'_>) -> Result<u64, sqlx::Error> {
        let mut changed = 0;
        for (sql, args) in self.statements(tx)? {
            changed += sqlx::query_with(&sql, args)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        }
        Ok(changed)
    }

    /// Runs the statements in `tx`; returns what their `RETURNING` gave
    /// (nothing without one). No row, no statement. On an error, roll `tx`
    /// back (see [`Rows`]).
    pub async fn run(self, tx: &mut Transaction<'_>) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut returned = Vec::new();
        for (sql, args) in self.statements(tx)? {
            returned.extend(sqlx::query_with(&sql, args).fetch_all(&mut **tx).await?);
        }
        Ok(returned)
    }

    /// The statements and their arguments for `conn`'s backend.
    fn statements(self, conn: &sqlx::AnyConnection) -> Result<Vec<Statement>, sqlx::Error> {
        if self.values.is_empty() {
            return Ok(Vec::new());
        }
        let sqlite = conn.backend_name() == SQLITE;
        if !sqlite {
            if let Some(marks) = columns::marks(&self.values) {
                let (arrays, values) = columns::unnest(self.values, self.width, 1, marks)?;
                let sql = format!("{} SELECT * FROM UNNEST({arrays}) {}", self.head, self.tail);
                return Ok(vec![(sql, arguments(values)?)]);
            }
        }
        self.values_lists(sqlite)
    }

    /// `VALUES (…), (…)` statements of a power of two rows each (see the
    /// module's doc): SQLite's with `?` placeholders and `INSERT OR FAIL`,
    /// PostgreSQL's with `$N`.
    fn values_lists(self, sqlite: bool) -> Result<Vec<Statement>, sqlx::Error> {
        // SQLite looks a numbered parameter's name up in a list, once per
        // parameter: quadratic in a statement of thousands. Anonymous `?`s
        // bind by position, and the head and tail here bind nothing.
        let most = MAX_PARAMETERS / self.width;
        let mut statements = Vec::new();
        let mut rows = self.values.len() / self.width;
        let mut values = self.values.into_iter();
        while rows > 0 {
            let take = power_of_two_at_most(rows.min(most));
            rows -= take;
            let chunk: Vec<Value> = values.by_ref().take(take * self.width).collect();
            let mut sql =
                String::with_capacity(self.head.len() + self.tail.len() + chunk.len() * 6);
            if sqlite {
                sql.push_str(INSERT_OR_FAIL);
                sql.push_str(&self.head[INSERT.len()..]);
            } else {
                sql.push_str(self.head);
            }
            sql.push_str(" VALUES ");
            for n in 0..chunk.len() {
                let opens = n % self.width == 0;
                if opens && n > 0 {
                    sql.push_str("), ");
                }
                sql.push_str(if opens { "(" } else { ", " });
                if sqlite {
                    sql.push('?');
                } else {
                    sql.push('$');
                    sql.push_str(&(n + 1).to_string());
                }
            }
            sql.push_str(") ");
            sql.push_str(self.tail);
            statements.push((sql, arguments(chunk)?));
        }
        Ok(statements)
    }
}

/// A statement's text and its bound values.
type Statement = (String, AnyArguments<'static>);

/// The transaction [`Rows`] run in.
pub type Transaction<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// The largest power of two not above `n` (which is at least 1).
fn power_of_two_at_most(n: usize) -> usize {
    1 << n.max(1).ilog2()
}

fn arguments(values: Vec<Value>) -> Result<AnyArguments<'static>, sqlx::Error> {
    let mut args = AnyArguments::default();
    args.reserve(values.len(), 0);
    for value in values {
        bind(&mut args, value)?;
    }
    Ok(args)
}

/// Runs `head IN (…) tail` for every key of `keys`, after the parameters
/// `fixed` (which `head` names `$1`, `$2`, …); returns all their rows. On
/// PostgreSQL one statement, `IN (SELECT UNNEST(…))`; on SQLite `IN`
/// lists of up to [`IN_KEYS`] keys. No key, no statement.
pub async fn fetch_in(
    conn: &mut sqlx::AnyConnection,
    head: &str,
    fixed: &[Value],
    keys: &[String],
    tail: &str,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    if conn.backend_name() != SQLITE {
        let keys: Vec<Value> = keys.iter().cloned().map(Value::Text).collect();
        if let Some(marks) = columns::marks(&keys) {
            let (array, values) = columns::unnest(keys, 1, fixed.len() + 1, marks)?;
            // A subquery, so the array is made once, not once per row.
            let sql = format!("{head} IN (SELECT UNNEST({array})) {tail}");
            let args = arguments(fixed.iter().cloned().chain(values).collect())?;
            return sqlx::query_with(&sql, args).fetch_all(&mut *conn).await;
        }
    }
    let mut rows = Vec::new();
    for chunk in keys.chunks(IN_KEYS) {
        let listed = chunk.len().next_power_of_two();
        let mut sql = String::with_capacity(head.len() + tail.len() + listed * 6);
        sql.push_str(head);
        sql.push_str(" IN (");
        for n in 0..listed {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(fixed.len() + n + 1).to_string());
        }
        sql.push_str(") ");
        sql.push_str(tail);
        let last = chunk.last().into_iter().cycle().take(listed - chunk.len());
        let values = fixed
            .iter()
            .cloned()
            .chain(chunk.iter().chain(last).cloned().map(Value::Text));
        let args = arguments(values.collect())?;
        rows.extend(sqlx::query_with(&sql, args).fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Batches of every size from 1 to 3,000 rows take a few statement
    /// texts in all (so SQLite keeps them prepared), and place every row
    /// (`tests/rows.rs` checks on both databases that each keeps its values).
    #[test]
    fn batch_sizes_share_a_few_statement_texts() {
        let mut texts = HashSet::new();
        for n in 1..=3_000_i64 {
            let mut rows = Rows::new("INSERT INTO t (a, b)", 2, "");
            for i in 0..n {
                rows.push([Value::Int(i), Value::from("x")]);
            }
            let statements = rows.values_lists(true).unwrap();
            let mut placed = 0;
            for (sql, _) in &statements {
                let here = sql.matches('(').count() - 1;
                assert!(here.is_power_of_two(), "{here} rows in one statement");
                placed += here;
                texts.insert(sql.clone());
            }
            assert_eq!(placed as i64, n);
            assert!(statements.len() <= 12, "{n} rows: {}", statements.len());
        }
        // 1, 2, 4, …, 2,048.
        assert_eq!(
            texts.len(),
            12,
            "{:?}",
            texts.iter().map(String::len).collect::<Vec<_>>()
        );
    }

    /// Every head is an `INSERT INTO`, which SQLite's statements rewrite.
    #[test]
    #[should_panic(expected = "a head starts `INSERT INTO `")]
    fn a_head_that_is_not_an_insert_is_refused() {
        Rows::new("UPDATE t SET a = 1", 1, "");
    }

    #[test]
    fn the_largest_power_of_two_not_above() {
        let cases = [
            (1, 1),
            (2, 2),
            (3, 2),
            (1_000, 512),
            (1_024, 1_024),
            (2_727, 2_048),
        ];
        for (n, expected) in cases {
            assert_eq!(power_of_two_at_most(n), expected, "{n}");
        }
    }
}
