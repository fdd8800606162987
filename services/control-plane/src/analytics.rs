//! Spend analytics: an account's requests, spend and tokens summed by day,
//! hour, model, provider, key, tag or end user over a range, with the
//! request log's filters (`/usage` and `GET /api/v1/usage/breakdown`).
//!
//! Sums come from the ledger's `requests` rows, the same rows the request
//! log lists, so a breakdown and an export of the same filter agree to the
//! nano-dollar. By tag, a request counts once under each of its tags (and
//! not at all when it has none); by user, requests without `user` group
//! under `""`.

use money::Money;
use serde::Serialize;
use sqlx::Row;

use crate::error::CpError;
use crate::request_log::{Bind, Filter, Sql};
use crate::ControlPlane;

/// The most groups a breakdown returns (the largest by spend; time series
/// are bounded by their range instead).
pub const MAX_GROUPS: i64 = 1_000;

/// What requests are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Hour,
    Model,
    Provider,
    Key,
    Tag,
    User,
}

impl GroupBy {
    /// Every grouping, as the API names them.
    pub const ALL: [GroupBy; 7] = [
        GroupBy::Day,
        GroupBy::Hour,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Key,
        GroupBy::Tag,
        GroupBy::User,
    ];

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Hour => "hour",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Key => "key",
            GroupBy::Tag => "tag",
            GroupBy::User => "user",
        }
    }

    /// `by` as given (`day` when absent).
    pub fn parse(text: Option<&str>) -> Result<GroupBy, CpError> {
        let text = text.filter(|t| !t.is_empty()).unwrap_or("day");
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str() == text)
            .ok_or_else(|| CpError::Invalid {
                param: "by",
                message: format!(
                    "`by` must be one of {}; `{}` was given.",
                    GroupBy::ALL.map(GroupBy::as_str).join(", "),
                    crate::echo(text)
                ),
            })
    }

    /// Whether groups are points in time (listed in time order).
    pub fn is_time(self) -> bool {
        matches!(self, GroupBy::Day | GroupBy::Hour)
    }

    /// The SQL of the group's value.
    fn expression(self) -> &'static str {
        match self {
            // Stored times are RFC 3339: the date is the first 10
            // characters, the hour the first 13.
            GroupBy::Day => "substr(r.at, 1, 10)",
            GroupBy::Hour => "substr(r.at, 1, 13)",
            GroupBy::Model => "r.model",
            GroupBy::Provider => "r.provider",
            GroupBy::Key => "r.key_id",
            GroupBy::Tag => "g.tag",
            GroupBy::User => "r.end_user",
        }
    }
}

/// One group's sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The day (`2026-12-04`), hour (`2026-12-04T10`), model, provider,
    /// key id, tag or user.
    pub group: String,
    pub requests: i64,
    /// Requests no provider answered.
    pub failed: i64,
    pub cost: Money,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

fn statement(account: &str, filter: &Filter, by: GroupBy) -> Sql {
    let mut sql = Sql::default();
    let account = sql.param(Bind::Text(account.to_owned()));
    let join = if by == GroupBy::Tag {
        " JOIN request_tags g ON g.event_id = r.event_id AND g.account = r.account"
    } else {
        ""
    };
    let group = by.expression();
    sql.text = format!(
        "SELECT {group} AS grp, COUNT(*) AS requests,
                SUM(CASE WHEN r.outcome = 'failed' THEN 1 ELSE 0 END) AS failed,
                CAST(SUM(r.cost) AS BIGINT) AS cost,
                CAST(SUM(r.input_tokens) AS BIGINT) AS input_tokens,
                CAST(SUM(r.output_tokens) AS BIGINT) AS output_tokens
         FROM requests r{join} WHERE r.account = {account}"
    );
    filter.conditions(&mut sql, "r", "r");
    if let Some(tag) = filter.tag() {
        let tag = sql.param(Bind::Text(tag.to_owned()));
        sql.text.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM request_tags t WHERE t.account = r.account \
               AND t.event_id = r.event_id AND t.tag = {tag})"
        ));
    }
    let order = if by.is_time() {
        "grp"
    } else {
        "cost DESC, requests DESC, grp"
    };
    let limit = sql.param(Bind::Int(MAX_GROUPS));
    sql.text
        .push_str(&format!(" GROUP BY {group} ORDER BY {order} LIMIT {limit}"));
    sql
}

impl ControlPlane {
    /// `account`'s requests matching `filter`, summed per group.
    pub async fn breakdown(
        &self,
        account: events::AccountId,
        filter: &Filter,
        by: GroupBy,
    ) -> Result<Vec<Group>, CpError> {
        let sql = statement(&account.to_string(), filter, by);
        let rows = sql.query().fetch_all(&self.store.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(Group {
                    group: row.try_get("grp")?,
                    requests: row.try_get("requests")?,
                    failed: row.try_get("failed")?,
                    cost: Money::from_nanos(row.try_get("cost")?),
                    input_tokens: row.try_get("input_tokens")?,
                    output_tokens: row.try_get("output_tokens")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(CpError::from)
    }
}

/// The sum of `groups` (by tag, a request with two tags counts twice).
pub fn total(groups: &[Group]) -> Group {
    groups.iter().fold(
        Group {
            group: "total".into(),
            requests: 0,
            failed: 0,
            cost: Money::ZERO,
            input_tokens: 0,
            output_tokens: 0,
        },
        |mut sum, g| {
            sum.requests += g.requests;
            sum.failed += g.failed;
            sum.cost += g.cost;
            sum.input_tokens += g.input_tokens;
            sum.output_tokens += g.output_tokens;
            sum
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grouping_reads_back_and_others_are_refused() {
        for by in GroupBy::ALL {
            assert_eq!(GroupBy::parse(Some(by.as_str())).unwrap(), by);
        }
        assert_eq!(GroupBy::parse(None).unwrap(), GroupBy::Day);
        assert!(matches!(
            GroupBy::parse(Some("colour")),
            Err(CpError::Invalid { param: "by", .. })
        ));
    }
}
