//! The request log: an account's requests as the ledger recorded them,
//! filtered, newest first, paged by cursor (`/requests` and
//! `GET /api/v1/requests`), and exported whole as CSV or JSON.
//!
//! Paging is by keyset, never by offset: a cursor is the (time, event id) of
//! the last row shown, and the next page starts strictly after it in the
//! `(account, at, event_id)` index, so page 1,000 costs what page 1 does and
//! a request recorded meanwhile neither repeats nor hides a row. A tag or
//! end-user filter walks its own index (`request_tags`, `requests_by_end_user`),
//! so a rare tag is as fast as a common one. Times are UTC; range bounds
//! count whole seconds (`from` inclusive, `to` exclusive).

use money::Money;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::CpError;
use crate::ControlPlane;

pub mod api;
pub mod export;

/// The most rows one page may hold.
pub const MAX_PAGE: i64 = 500;
/// Rows per page when `limit` is not given.
pub const DEFAULT_PAGE: i64 = 50;
/// Rows read per query while an export streams.
pub const EXPORT_BATCH: i64 = 1_000;

/// The query string of the list and the export, as given.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterInput {
    pub from: Option<String>,
    pub to: Option<String>,
    pub key: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub tier: Option<String>,
    pub kind: Option<String>,
    pub outcome: Option<String>,
    pub min_cost: Option<String>,
    pub request_id: Option<String>,
    pub tag: Option<String>,
    pub user: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// The export's format: `csv` (default) or `json`.
    pub format: Option<String>,
    /// The breakdown's grouping (`analytics`; the list ignores it).
    pub by: Option<String>,
}

/// A checked filter: every field narrows the set; absent fields do not.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    from: Option<String>,
    to: Option<String>,
    equal: Vec<(&'static str, String)>,
    min_cost: Option<Money>,
    tag: Option<String>,
    user: Option<String>,
}

/// Where a page starts: just after this row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    at: String,
    event_id: String,
}

impl Cursor {
    /// The opaque form clients pass back.
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", self.at, self.event_id))
    }

    fn decode(text: &str) -> Result<Cursor, CpError> {
        let bad = || CpError::Invalid {
            param: "cursor",
            message: "`cursor` is not one this API returned; start again without it.".into(),
        };
        let bytes = hex::decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (at, event_id) = text.split_once('|').ok_or_else(bad)?;
        Ok(Cursor {
            at: at.to_owned(),
            event_id: event_id.to_owned(),
        })
    }
}

const OUTCOMES: [&str; 4] = ["completed", "interrupted", "client_disconnected", "failed"];
const KINDS: [&str; 2] = ["chat", "embeddings"];
/// The longest value a text filter may hold (ids and names are far shorter).
const MAX_FILTER_CHARS: usize = 256;

/// A range bound as the `at` column compares: whole seconds, no zone. A
/// stored time in that second sorts after it (`…:05+00:00`,
/// `…:05.2+00:00` and `…:05Z` all start with `…:05`), so `at >= bound`
/// takes the whole second.
fn bound(text: &str, param: &'static str) -> Result<String, CpError> {
    Ok(crate::input::time(text, param)?
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string())
}

fn one_of(value: &str, allowed: &[&str], param: &'static str) -> Result<String, CpError> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(CpError::invalid(
            param,
            format!(
                "`{param}` must be one of {}; `{}` was given.",
                allowed.join(", "),
                crate::echo(value)
            ),
        ))
    }
}

fn text(value: &str, param: &'static str) -> Result<String, CpError> {
    if value.chars().count() > MAX_FILTER_CHARS {
        return Err(CpError::invalid(
            param,
            format!("`{param}` is longer than {MAX_FILTER_CHARS} characters."),
        ));
    }
    Ok(value.to_owned())
}

/// A parameter given with a value (`?model=` counts as not given).
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl FilterInput {
    /// The filter, or the first parameter that is wrong.
    pub fn filter(&self) -> Result<Filter, CpError> {
        let mut filter = Filter {
            from: given(&self.from).map(|t| bound(t, "from")).transpose()?,
            to: given(&self.to).map(|t| bound(t, "to")).transpose()?,
            ..Filter::default()
        };
        if let (Some(from), Some(to)) = (&filter.from, &filter.to) {
            if to <= from {
                return Err(CpError::invalid("to", "`to` must be after `from`."));
            }
        }
        let tiers = catalog::Tier::ALL.map(|t| t.as_str());
        let columns: [(&'static str, &'static str, &Option<String>); 7] = [
            ("key", "key_id", &self.key),
            ("model", "model", &self.model),
            ("provider", "provider", &self.provider),
            ("tier", "tier", &self.tier),
            ("kind", "kind", &self.kind),
            ("outcome", "outcome", &self.outcome),
            ("request_id", "request_id", &self.request_id),
        ];
        for (param, column, value) in columns {
            let Some(value) = given(value) else { continue };
            let value = match param {
                "tier" => one_of(value, &tiers, param)?,
                "kind" => one_of(value, &KINDS, param)?,
                "outcome" => one_of(value, &OUTCOMES, param)?,
                _ => text(value, param)?,
            };
            filter.equal.push((column, value));
        }
        if let Some(cost) = given(&self.min_cost) {
            let cost = crate::input::usd(cost, "min_cost")?;
            filter.min_cost = Some(cost);
        }
        filter.tag = given(&self.tag).map(|t| text(t, "tag")).transpose()?;
        filter.user = given(&self.user).map(|u| text(u, "user")).transpose()?;
        Ok(filter)
    }

    /// The page size asked for.
    pub fn limit(&self) -> Result<i64, CpError> {
        match self.limit.as_deref().filter(|l| !l.is_empty()) {
            None => Ok(DEFAULT_PAGE),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    CpError::invalid(
                        "limit",
                        format!("`limit` must be a whole number from 1 to {MAX_PAGE}."),
                    )
                }),
        }
    }

    /// The cursor to start after, if any.
    pub fn cursor(&self) -> Result<Option<Cursor>, CpError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Cursor::decode)
            .transpose()
    }
}

/// One request as the log lists it.
#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    /// The `X-Request-Id`.
    pub id: String,
    /// When the ledger recorded it (UTC, RFC 3339).
    pub at: String,
    /// The API key's id.
    pub key: String,
    pub kind: String,
    pub model: String,
    pub provider: String,
    pub tier: Option<String>,
    pub auto_score: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: Money,
    pub latency_ms: i64,
    pub first_byte_ms: Option<i64>,
    pub attempts: i64,
    pub outcome: String,
    pub user: Option<String>,
    pub tags: Vec<String>,
    #[serde(skip)]
    event_id: String,
}

impl LogRow {
    fn read(row: &AnyRow) -> Result<LogRow, sqlx::Error> {
        let some = |s: String| (!s.is_empty()).then_some(s);
        let tags: String = row.try_get("tags")?;
        Ok(LogRow {
            id: row.try_get("request_id")?,
            at: row.try_get("at")?,
            key: row.try_get("key_id")?,
            kind: row.try_get("kind")?,
            model: row.try_get("model")?,
            provider: row.try_get("provider")?,
            tier: some(row.try_get("tier")?),
            auto_score: row.try_get("auto_score")?,
            input_tokens: row.try_get("input_tokens")?,
            output_tokens: row.try_get("output_tokens")?,
            cost: Money::from_nanos(row.try_get("cost")?),
            latency_ms: row.try_get("total_ms")?,
            first_byte_ms: row.try_get("first_byte_ms")?,
            attempts: row.try_get("attempts")?,
            outcome: row.try_get("outcome")?,
            user: some(row.try_get("end_user")?),
            tags: tags.lines().map(str::to_owned).collect(),
            event_id: row.try_get("event_id")?,
        })
    }

    /// The time as the pages show it (`YYYY-MM-DD HH:MM:SS`).
    pub fn short_at(&self) -> String {
        crate::queries::short_time(&self.at)
    }

    /// Where the page after this row starts.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            at: self.at.clone(),
            event_id: self.event_id.clone(),
        }
    }

    /// The CSV header, matching [`LogRow::csv`].
    pub const CSV_HEADER: &'static str = "time,request_id,key,kind,model,provider,tier,auto_score,input_tokens,output_tokens,cost_usd,latency_ms,first_byte_ms,attempts,outcome,user,tags\n";

    /// The row as one CSV line (tags joined by `;`).
    pub fn csv(&self) -> String {
        let field = ledger::export::csv_field;
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            self.at,
            field(&self.id),
            field(&self.key),
            self.kind,
            field(&self.model),
            field(&self.provider),
            self.tier.as_deref().unwrap_or_default(),
            opt(self.auto_score),
            self.input_tokens,
            self.output_tokens,
            self.cost,
            self.latency_ms,
            opt(self.first_byte_ms),
            self.attempts,
            self.outcome,
            field(self.user.as_deref().unwrap_or_default()),
            field(&self.tags.join(";")),
        )
    }
}

/// One page of the log.
#[derive(Debug, Clone, Serialize)]
pub struct LogPage {
    pub data: Vec<LogRow>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

impl Filter {
    /// Appends the filter's conditions but the tag (which the caller joins
    /// or tests): request columns of alias `r`, times of alias `d`.
    pub(crate) fn conditions(&self, sql: &mut Sql, r: &str, d: &str) {
        if let Some(user) = &self.user {
            sql.and(&format!("{r}.end_user"), "=", Bind::Text(user.clone()));
            // The partial index's own condition, so the planner may use it.
            sql.text.push_str(&format!(" AND {r}.end_user <> ''"));
        }
        if let Some(from) = &self.from {
            sql.and(&format!("{d}.at"), ">=", Bind::Text(from.clone()));
        }
        if let Some(to) = &self.to {
            sql.and(&format!("{d}.at"), "<", Bind::Text(to.clone()));
        }
        for (column, value) in &self.equal {
            sql.and(&format!("{r}.{column}"), "=", Bind::Text(value.clone()));
        }
        if let Some(cost) = self.min_cost {
            sql.and(&format!("{r}.cost"), ">=", Bind::Int(cost.nanos()));
        }
    }

    /// The tag asked for, if any.
    pub(crate) fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
}

/// A bound parameter.
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// A query's text and its parameters, numbered as they are added.
#[derive(Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    binds: Vec<Bind>,
}

impl Sql {
    /// Adds a parameter; its placeholder (`$n`).
    pub(crate) fn param(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.binds.len())
    }

    fn and(&mut self, column: &str, op: &str, bind: Bind) {
        let p = self.param(bind);
        self.text.push_str(&format!(" AND {column} {op} {p}"));
    }

    /// The statement with its parameters bound.
    pub(crate) fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for bind in &self.binds {
            query = match bind {
                Bind::Text(t) => query.bind(t.as_str()),
                Bind::Int(n) => query.bind(*n),
            };
        }
        query
    }
}

/// The columns a row is read from, of the table aliased `alias`.
fn columns(alias: &str) -> String {
    [
        "event_id",
        "at",
        "request_id",
        "key_id",
        "kind",
        "model",
        "provider",
        "tier",
        "auto_score",
        "input_tokens",
        "output_tokens",
        "cost",
        "total_ms",
        "first_byte_ms",
        "attempts",
        "outcome",
        "end_user",
        "tags",
    ]
    .map(|c| format!("{alias}.{c}"))
    .join(", ")
}

/// The statement for up to `limit` rows of `filter` after `after`. The
/// table whose index drives the walk (`d`) is the tag table when a tag is
/// asked for, else the requests themselves (`r` is the request row).
fn statement(account: &str, filter: &Filter, after: Option<&Cursor>, limit: i64) -> Sql {
    let mut sql = Sql::default();
    let account = sql.param(Bind::Text(account.to_owned()));
    let (source, r) = match &filter.tag {
        Some(tag) => {
            let tag = sql.param(Bind::Text(tag.clone()));
            (
                format!(
                    "request_tags d JOIN requests r ON r.event_id = d.event_id \
                     WHERE d.account = {account} AND d.tag = {tag} AND r.account = {account}"
                ),
                "r",
            )
        }
        None => (format!("requests d WHERE d.account = {account}"), "d"),
    };
    sql.text = format!("SELECT {} FROM {source}", columns(r));
    filter.conditions(&mut sql, r, "d");
    if let Some(after) = after {
        let at = sql.param(Bind::Text(after.at.clone()));
        let id = sql.param(Bind::Text(after.event_id.clone()));
        sql.text.push_str(&format!(
            " AND d.at <= {at} AND (d.at < {at} OR (d.at = {at} AND d.event_id < {id}))"
        ));
    }
    let limit = sql.param(Bind::Int(limit));
    sql.text.push_str(&format!(
        " ORDER BY d.at DESC, d.event_id DESC LIMIT {limit}"
    ));
    sql
}

impl ControlPlane {
    /// Up to `limit` rows of `account`'s log matching `filter`, after `after`.
    pub async fn request_rows(
        &self,
        account: events::AccountId,
        filter: &Filter,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<LogRow>, CpError> {
        let sql = statement(&account.to_string(), filter, after, limit);
        let rows = sql.query().fetch_all(&self.store.pool).await?;
        Ok(rows.iter().map(LogRow::read).collect::<Result<_, _>>()?)
    }

    /// One page of `account`'s log: `limit` rows and the cursor after them.
    pub async fn request_page(
        &self,
        account: events::AccountId,
        filter: &Filter,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<LogPage, CpError> {
        let mut data = self.request_rows(account, filter, after, limit + 1).await?;
        let more = data.len() as i64 > limit;
        data.truncate(limit as usize);
        let next_cursor = more
            .then(|| data.last().map(|r| r.cursor().encode()))
            .flatten();
        Ok(LogPage { data, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> FilterInput {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        serde_json::from_value(serde_json::Value::Object(
            url_pairs(&query)
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        ))
        .unwrap()
    }

    fn url_pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn bounds_take_whole_seconds_in_the_stored_order() {
        let b = bound("2026-12-04T10:00:05.250+01:00", "from").unwrap();
        assert_eq!(b, "2026-12-04T09:00:05");
        // Every stored form of that second sorts at or after the bound.
        for stored in [
            "2026-12-04T09:00:05Z",
            "2026-12-04T09:00:05+00:00",
            "2026-12-04T09:00:05.5+00:00",
            "2026-12-04T09:00:05.000001Z",
        ] {
            assert!(stored >= b.as_str(), "{stored}");
        }
        assert!("2026-12-04T09:00:04.999Z" < b.as_str());
        assert_eq!(bound("2026-12-04", "to").unwrap(), "2026-12-04T00:00:00");
        assert!(bound("yesterday", "from").is_err());
    }

    #[test]
    fn bad_filters_name_their_parameter() {
        for (pairs, param) in [
            (vec![("outcome", "done")], "outcome"),
            (vec![("tier", "gold")], "tier"),
            (vec![("kind", "image")], "kind"),
            (vec![("min_cost", "cheap")], "min_cost"),
            (vec![("from", "2026-12-05"), ("to", "2026-12-04")], "to"),
        ] {
            match input(&pairs).filter() {
                Err(CpError::Invalid { param: p, .. }) => assert_eq!(p, param),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
        assert!(input(&[("limit", "0")]).limit().is_err());
        assert!(input(&[("limit", "501")]).limit().is_err());
        assert_eq!(input(&[]).limit().unwrap(), DEFAULT_PAGE);
        assert!(input(&[("cursor", "zz")]).cursor().is_err());
    }

    #[test]
    fn a_cursor_reads_back_what_it_was() {
        let c = Cursor {
            at: "2026-12-04T10:00:00.5Z".into(),
            event_id: "e1".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn csv_lines_quote_what_needs_quoting() {
        let row = LogRow {
            id: "req_1".into(),
            at: "2026-12-04T10:00:00Z".into(),
            key: "k".into(),
            kind: "chat".into(),
            model: "m".into(),
            provider: "p".into(),
            tier: None,
            auto_score: Some(40),
            input_tokens: 1,
            output_tokens: 2,
            cost: Money::from_nanos(1_500),
            latency_ms: 3,
            first_byte_ms: None,
            attempts: 1,
            outcome: "completed".into(),
            user: Some("a,b".into()),
            tags: vec!["team=x".into(), "say \"hi\"".into()],
            event_id: "e".into(),
        };
        assert_eq!(
            row.csv(),
            "2026-12-04T10:00:00Z,req_1,k,chat,m,p,,40,1,2,0.0000015,3,,1,completed,\"a,b\",\"team=x;say \"\"hi\"\"\"\n"
        );
        assert_eq!(
            LogRow::CSV_HEADER.matches(',').count(),
            row.csv().matches(',').count() - 1,
            "one comma is inside the quoted user"
        );
    }
}
