//! The request log: what the gateway served, attributed (`user`, `metadata`,
//! `X-Model-Router-Tags`), reaches `/api/v1/requests` and `/requests`
//! through the ledger; filters, cursor paging and the streamed exports
//! agree; and paging over many rows with tied times shows each row once.

use std::collections::BTreeSet;
use std::time::Duration;

use control_plane::request_log::FilterInput;
use events::AccountId;
use reqwest::Method;
use serde_json::{json, Value};
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Browser, Stack};

/// A chat request with attribution; the gateway's answer.
async fn chat(stack: &Stack, key: &str, body: Value, tags: Option<&str>) -> reqwest::Response {
    let mut request = stack
        .gateway
        .http
        .post(format!("{}/v1/chat/completions", stack.gateway.url))
        .bearer_auth(key)
        .json(&body);
    if let Some(tags) = tags {
        request = request.header("X-Model-Router-Tags", tags);
    }
    request.send().await.expect("gateway reachable")
}

fn hello(extra: Value) -> Value {
    let mut body =
        json!({"model": "economy", "messages": [{"role": "user", "content": "Say hello"}]});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    body
}

/// The log's rows for `query`, every page walked with `limit`.
async fn walk(b: &Browser, query: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1_000 {
        let path = format!("/api/v1/requests?limit={limit}&{query}{cursor}");
        let (status, page) = b.api(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {page}");
        rows.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return rows,
        }
    }
    panic!("paging did not end");
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn served_requests_are_logged_filtered_paged_and_exported(backends: Backends) {
    let stack = Stack::start(backends, fast_config()).await;
    let b = stack.browser();
    b.sign_up("logs@example.com", "Log Readers").await;
    let key = b.create_key("logs").await;

    // Bad attribution is refused before anything is served or billed.
    let tags = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (sixteen, seventeen) = (tags(16), tags(17));
    for (body, tags, param) in [
        (hello(json!({"user": "u".repeat(257)})), None, "user"),
        (hello(json!({"metadata": {"n": 1}})), None, "metadata"),
        (
            hello(json!({"metadata": {"k": "v".repeat(200)}})),
            None,
            "metadata",
        ),
        (
            hello(json!({})),
            Some(seventeen.as_str()),
            "x-model-router-tags",
        ),
        (
            hello(json!({"metadata": {"a": "b"}})),
            Some(&*sixteen),
            "metadata",
        ),
    ] {
        let refused = chat(&stack, &key, body, tags).await;
        assert_eq!(refused.status(), 400);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }

    let mut sent = Vec::new();
    let cases = [
        (json!({"user": "u-1"}), Some("team=search, nightly")),
        (json!({"user": "u-1"}), Some("team=search")),
        (
            json!({"user": "u-1", "metadata": {"env": "prod"}}),
            Some("team=search"),
        ),
        (json!({"user": "u-2", "metadata": {"team": "ads"}}), None),
        (json!({"user": "u-2", "metadata": {"team": "ads"}}), None),
        (json!({}), None),
    ];
    for (extra, tags) in cases {
        let mut served = None;
        for _ in 0..200 {
            let r = chat(&stack, &key, hello(extra.clone()), tags).await;
            if r.status() == 200 {
                served = Some(r.headers()["x-request-id"].to_str().unwrap().to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        sent.push(served.expect("the key works"));
    }
    let mut all = Vec::new();
    for _ in 0..400 {
        all = walk(&b, "", 50).await;
        if all.len() == sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(
        ids(&all),
        newest_first,
        "every served request, newest first"
    );
    let first = &all[all.len() - 1];
    assert_eq!(first["user"], "u-1");
    assert_eq!(first["tags"], json!(["team=search", "nightly"]));
    assert_eq!(first["kind"], "chat");
    assert_eq!(first["tier"], "economy");
    assert_eq!(first["outcome"], "completed");
    assert_eq!(first["attempts"], 1, "served at the first try: {first}");
    assert_eq!(all[3]["tags"], json!(["team=search", "env=prod"]));

    // Filters.
    let by = async |query: &str| ids(&walk(&b, query, 50).await);
    assert_eq!(by("tag=team%3Dsearch").await, newest_first[3..].to_vec());
    assert_eq!(by("tag=nightly").await, [sent[0].clone()]);
    assert_eq!(
        by("tag=team%3Dads&user=u-2").await,
        newest_first[1..3].to_vec()
    );
    assert_eq!(by("user=u-1").await, newest_first[3..].to_vec());
    assert_eq!(
        by(&format!("request_id={}", sent[2])).await,
        [sent[2].clone()]
    );
    assert_eq!(by("outcome=failed").await, Vec::<String>::new());
    assert_eq!(by("kind=chat&tier=economy").await, newest_first);
    let model = first["model"].as_str().unwrap();
    let of_model = by(&format!("model={model}")).await;
    assert!(of_model.contains(&sent[0]));
    assert_eq!(
        by("from=2000-01-01&to=2000-01-02").await,
        Vec::<String>::new()
    );
    assert_eq!(by("from=2000-01-01").await, newest_first);
    // Paging one row at a time meets every row once, in the same order.
    assert_eq!(ids(&walk(&b, "", 1).await), newest_first);
    assert_eq!(
        ids(&walk(&b, "tag=team%3Dsearch", 2).await),
        newest_first[3..].to_vec()
    );

    // Bad filters name their parameter.
    for (query, param) in [
        ("outcome=done", Some("outcome")),
        ("limit=0", Some("limit")),
        ("cursor=nothex", Some("cursor")),
        ("from=yesterday", Some("from")),
        ("min_cost=lots", Some("min_cost")),
        ("colour=red", None),
    ] {
        let (status, error) = b
            .api(Method::GET, &format!("/api/v1/requests?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}: {error}");
        if let Some(param) = param {
            assert_eq!(error["error"]["param"], param, "{query}: {error}");
        } else {
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("colour"),
                "{error}"
            );
        }
    }

    // One request's detail: the usage event, attempts and attribution.
    let (status, detail) = b
        .api(Method::GET, &format!("/api/v1/requests/{}", sent[3]), None)
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["tags"], json!(["team=ads"]));
    assert_eq!(detail["user"], "u-2");
    assert!(detail["attempts"].is_array(), "{detail}");
    let (status, _) = b.api(Method::GET, "/api/v1/requests/req_never", None).await;
    assert_eq!(status, 404);
    // The same request as a ledger older than migration 0014 records it
    // after the migration ran (a rolling upgrade): no position on the
    // request row, a claim row of its own holding it.
    let pool = &stack.backends.store.pool;
    let (event_id, seq, account, at): (String, i64, String, String) =
        sqlx::query_as("SELECT event_id, seq, account, at FROM requests WHERE request_id = $1")
            .bind(&sent[3])
            .fetch_one(pool)
            .await
            .unwrap();
    sqlx::query("UPDATE requests SET seq = 0 WHERE event_id = $1")
        .bind(&event_id)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO applied_events (event_id, seq, kind, account, at) VALUES ($1, $2, 'usage_recorded', $3, $4)",
    )
    .bind(&event_id)
    .bind(seq)
    .bind(&account)
    .bind(&at)
    .execute(pool)
    .await
    .unwrap();
    let (status, again) = b
        .api(Method::GET, &format!("/api/v1/requests/{}", sent[3]), None)
        .await;
    assert_eq!((status, &again), (200, &detail));

    // The exports hold the filtered set, whole.
    let download = async |path: &str| {
        let r = b
            .http
            .get(format!("{}{path}", stack.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        (kind, r.text().await.unwrap())
    };
    let (kind, csv) = download("/api/v1/requests/export").await;
    assert!(kind.starts_with("text/csv"), "{kind}");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("time,request_id,key,"));
    assert_eq!(lines.len(), 1 + sent.len());
    assert!(lines[1].contains(&sent[5]));
    let (_, csv) = download("/requests/export.csv?tag=team%3Dsearch").await;
    assert_eq!(csv.lines().count(), 1 + 3);
    assert!(csv.contains("team=search;nightly"), "{csv}");
    let (kind, json) = download("/api/v1/requests/export?format=json&user=u-2").await;
    assert_eq!(kind, "application/json");
    let exported: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(ids(&exported), newest_first[1..3].to_vec());

    // The pages: the log with its filters, a detail, and a bad filter
    // shown as a readable error on the page.
    let page = b.get("/requests?tag=team%3Dsearch").await;
    assert_eq!(page.status, 200);
    for id in &newest_first[3..] {
        assert!(page.body.contains(id.as_str()), "{id} is listed");
    }
    assert!(!page.body.contains(&*sent[5]));
    assert!(page.body.contains("export.csv?tag=team%3Dsearch"));
    let detail = b.get(&format!("/requests/{}", sent[0])).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("id=\"attempts\"") && detail.body.contains("nightly"));
    let bad = b.get("/requests?outcome=%3Cdone%3E").await;
    assert_eq!(bad.status, 200);
    assert!(
        bad.body.contains("`outcome` must be one of"),
        "{}",
        bad.body
    );
    assert!(!bad.body.contains("<done>"), "the input is escaped");
    assert_eq!(b.get("/requests/req_never").await.status, 404);

    // Analytics: the same rows, summed per group.
    let breakdown = async |query: &str| {
        let (status, body) = b
            .api(
                Method::GET,
                &format!("/api/v1/usage/breakdown?{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        let groups: Vec<(String, i64)> = body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["group"].as_str().unwrap().to_owned(),
                    g["requests"].as_i64().unwrap(),
                )
            })
            .collect();
        (groups, body["total"].clone())
    };
    let (by_tag, _) = breakdown("by=tag").await;
    let by_tag: BTreeSet<(String, i64)> = by_tag.into_iter().collect();
    let expected: BTreeSet<(String, i64)> = [
        ("team=search", 3),
        ("team=ads", 2),
        ("nightly", 1),
        ("env=prod", 1),
    ]
    .map(|(t, n)| (t.to_owned(), n))
    .into();
    assert_eq!(by_tag, expected);
    let (by_user, _) = breakdown("by=user").await;
    let by_user: BTreeSet<(String, i64)> = by_user.into_iter().collect();
    let expected: BTreeSet<(String, i64)> = [("u-1", 3), ("u-2", 2), ("", 1)]
        .map(|(t, n)| (t.to_owned(), n))
        .into();
    assert_eq!(by_user, expected);
    let (by_day, total) = breakdown("by=day&tag=team%3Dsearch").await;
    assert_eq!(by_day.len(), 1);
    assert_eq!(by_day[0].1, 3);
    assert_eq!(total["requests"], 3);
    let logged: money::Money = all[3..]
        .iter()
        .map(|r| r["cost"].as_str().unwrap().parse::<money::Money>().unwrap())
        .fold(money::Money::ZERO, |a, b| a + b);
    assert_eq!(
        total["cost"],
        logged.to_string(),
        "the breakdown sums the log's rows"
    );
    let (status, error) = b
        .api(Method::GET, "/api/v1/usage/breakdown?by=colour", None)
        .await;
    assert_eq!(
        (status, error["error"]["param"].clone()),
        (400, json!("by"))
    );
    let page = b.get("/usage?by=tag&from=2000-01-01").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("team=search") && page.body.contains("id=\"breakdown-total\""));
    let page = b.get("/usage").await;
    assert!(
        page.body.contains("<svg id=\"usage-chart\""),
        "the last 7 days, charted"
    );
    let bad = b.get("/usage?by=colour").await;
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("`by` must be one of"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn served_requests_are_logged_on_the_embedded_backbone() {
    served_requests_are_logged_filtered_paged_and_exported(Backends::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn served_requests_are_logged_on_nats_and_postgres() {
    served_requests_are_logged_filtered_paged_and_exported(Backends::distributed().await).await;
}

/// Seeds `n` request rows for `account`: times repeat (ties on `at` that
/// only the event id orders), and models, outcomes, users and tags vary.
async fn seed(stack: &Stack, account: AccountId, n: usize) -> Vec<Row> {
    let prefix = &account.to_string()[..8];
    let rows: Vec<Row> = (0..n)
        .map(|i| Row {
            event_id: format!("ev-{prefix}-{:05}", (i * 7919) % 100_000),
            at: format!("2026-12-04T10:{:02}:{:02}Z", (i / 40) % 60, (i / 4) % 10),
            model: ["m-a", "m-b", "m-c"][i % 3].to_owned(),
            outcome: if i % 5 == 0 { "failed" } else { "completed" }.to_owned(),
            user: if i % 2 == 0 {
                format!("user-{}", i % 6)
            } else {
                String::new()
            },
            tags: match i % 4 {
                0 => vec!["team=a".to_owned()],
                1 => vec!["team=b".to_owned(), "rare".to_owned()],
                _ => Vec::new(),
            },
            cost: (i as i64 % 10) * 1_000,
        })
        .collect();
    let mut tx = stack.backends.store.pool.begin().await.unwrap();
    for row in &rows {
        sqlx::query(
            "INSERT INTO requests (event_id, account, at, request_id, model, provider, input_tokens,
                                   output_tokens, cost, total_ms, outcome, key_id, end_user, tags)
             VALUES ($1, $2, $3, $4, $5, 'p', 1, 1, $6, 5, $7, 'k', $8, $9)",
        )
        .bind(&row.event_id)
        .bind(account.to_string())
        .bind(&row.at)
        .bind(format!("req-{}", row.event_id))
        .bind(&row.model)
        .bind(row.cost)
        .bind(&row.outcome)
        .bind(&row.user)
        .bind(row.tags.join("\n"))
        .execute(&mut *tx)
        .await
        .unwrap();
        for tag in &row.tags {
            sqlx::query(
                "INSERT INTO request_tags (account, tag, at, event_id) VALUES ($1, $2, $3, $4)",
            )
            .bind(account.to_string())
            .bind(tag)
            .bind(&row.at)
            .bind(&row.event_id)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    rows
}

#[derive(Debug, Clone)]
struct Row {
    event_id: String,
    at: String,
    model: String,
    outcome: String,
    user: String,
    tags: Vec<String>,
    cost: i64,
}

async fn paging_shows_every_row_once(backends: Backends) {
    let stack = Stack::start(backends, fast_config()).await;
    let (account, other) = (AccountId::new(), AccountId::new());
    let rows = seed(&stack, account, 1_200).await;
    seed(&stack, other, 300).await;
    let cp = &stack.control_plane;
    let mut expected_all = rows.clone();
    expected_all.sort_by(|a, b| (&b.at, &b.event_id).cmp(&(&a.at, &a.event_id)));
    type Keep = fn(&Row) -> bool;
    let cases: [(FilterInput, Keep); 7] = [
        (FilterInput::default(), |_| true),
        (
            FilterInput {
                tag: Some("rare".into()),
                ..Default::default()
            },
            |r| r.tags.iter().any(|t| t == "rare"),
        ),
        (
            FilterInput {
                user: Some("user-2".into()),
                ..Default::default()
            },
            |r| r.user == "user-2",
        ),
        (
            FilterInput {
                model: Some("m-b".into()),
                outcome: Some("failed".into()),
                ..Default::default()
            },
            |r| r.model == "m-b" && r.outcome == "failed",
        ),
        (
            FilterInput {
                min_cost: Some("0.000007".into()),
                ..Default::default()
            },
            |r| r.cost >= 7_000,
        ),
        (
            FilterInput {
                from: Some("2026-12-04T10:05:00Z".into()),
                to: Some("2026-12-04T10:10:00Z".into()),
                tag: Some("team=a".into()),
                ..Default::default()
            },
            |r| {
                r.at.as_str() >= "2026-12-04T10:05:00"
                    && r.at.as_str() < "2026-12-04T10:10:00"
                    && r.tags.iter().any(|t| t == "team=a")
            },
        ),
        (
            FilterInput {
                model: Some("m-c".into()),
                ..Default::default()
            },
            |r| r.model == "m-c",
        ),
    ];
    for (input, keep) in cases {
        let expected: Vec<&str> = expected_all
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.event_id.as_str())
            .collect();
        assert!(!expected.is_empty(), "{input:?} selects something");
        let filter = input.filter().unwrap();
        for limit in [1, 37, 500] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = cp
                    .request_page(account, &filter, after.as_ref(), limit)
                    .await
                    .unwrap();
                assert!(page.data.len() as i64 <= limit);
                seen.extend(
                    page.data
                        .iter()
                        .map(|r| r.id.trim_start_matches("req-").to_owned()),
                );
                match page.next_cursor {
                    Some(next) => {
                        let input = FilterInput {
                            cursor: Some(next),
                            ..Default::default()
                        };
                        after = input.cursor().unwrap();
                    }
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{input:?} by {limit}");
            assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
        }
        // The breakdown of the same filter by model sums the same rows.
        let groups = cp
            .breakdown(account, &filter, control_plane::analytics::GroupBy::Model)
            .await
            .unwrap();
        for model in ["m-a", "m-b", "m-c"] {
            let rows: Vec<&Row> = expected_all
                .iter()
                .filter(|r| keep(r) && r.model == model)
                .collect();
            let group = groups.iter().find(|g| g.group == model);
            assert_eq!(
                group.map_or(0, |g| g.requests),
                rows.len() as i64,
                "{input:?} {model}"
            );
            let cost: i64 = rows.iter().map(|r| r.cost).sum();
            assert_eq!(
                group.map_or(0, |g| g.cost.nanos()),
                cost,
                "{input:?} {model}"
            );
        }
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_shows_every_row_once_on_sqlite() {
    paging_shows_every_row_once(Backends::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_shows_every_row_once_on_postgres() {
    paging_shows_every_row_once(Backends::distributed().await).await;
}
