//! How fast the request log pages at scale: 100,000 requests of one account
//! (among 200,000 in the table), paged by each filter the API offers, from
//! the first page and from deep in the set (after 100 pages, or the last
//! page of a smaller set), 50 rows a
//! page, on PostgreSQL and on SQLite. Baseline, in the same run: looking
//! one request up by its id (an indexed single-row read). Prints p50 and
//! p95 per filter and p95 as a multiple of the baseline's.
//! Run with `cargo bench -p control-plane --bench request_log`
//! (`LOG_ROWS` changes the size, `LOG_ONLY=postgres` or `sqlite` one backend).

use std::time::{Duration, Instant};

use control_plane::request_log::{Cursor, FilterInput};
use control_plane::ControlPlane;
use events::AccountId;
use store::rows::Rows;
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Stack};

const PAGE: i64 = 50;
const SAMPLES: usize = 60;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds `n` rows for `account`, a second apart in time order, in
/// multi-row statements. Tags: `team=a` on a quarter, `rare` on one in a
/// thousand; 100 end users on half; 5 models; 2% failed.
async fn seed(stack: &Stack, account: AccountId, n: usize) {
    let account = account.to_string();
    let mut tx = stack.backends.store.pool.begin().await.unwrap();
    let mut requests = Rows::new(REQUESTS, 16, "");
    let mut tags = Rows::new(
        "INSERT INTO request_tags (account, tag, at, event_id)",
        4,
        "",
    );
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    for i in 0..n {
        let event_id = format!("{}-{i:08}", &account[..8]);
        let at = (start + chrono::Duration::seconds(i as i64))
            .to_utc()
            .to_rfc3339();
        let mut row_tags = Vec::new();
        if i % 4 == 0 {
            row_tags.push("team=a");
        }
        if i % 1000 == 7 {
            row_tags.push("rare");
        }
        for tag in &row_tags {
            tags.push([
                account.as_str().into(),
                (*tag).into(),
                at.as_str().into(),
                event_id.as_str().into(),
            ]);
        }
        requests.push([
            event_id.as_str().into(),
            account.as_str().into(),
            at.as_str().into(),
            format!("req_{event_id}").into(),
            format!("model-{}", i % 5).into(),
            "openai".into(),
            100i64.into(),
            50i64.into(),
            ((i % 97) as i64 * 1_000).into(),
            120i64.into(),
            if i % 50 == 0 { "failed" } else { "completed" }.into(),
            format!("key{}", i % 3).into(),
            if i % 2 == 0 {
                format!("user-{}", i % 100)
            } else {
                String::new()
            }
            .into(),
            row_tags.join("\n").into(),
            "standard".into(),
            "chat".into(),
        ]);
        if requests.len() == 5_000 {
            let full = std::mem::replace(&mut requests, Rows::new(REQUESTS, 16, ""));
            full.run(&mut tx).await.unwrap();
        }
    }
    requests.run(&mut tx).await.unwrap();
    tags.run(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
}

const REQUESTS: &str = "INSERT INTO requests (event_id, account, at, request_id, model, provider,
     input_tokens, output_tokens, cost, total_ms, outcome, key_id, end_user, tags, tier, kind)";

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// The cursor after `pages` pages of `filter` (or before its last page,
/// for a set that ends sooner).
async fn deep(
    cp: &ControlPlane,
    account: AccountId,
    input: &FilterInput,
    pages: usize,
) -> Option<Cursor> {
    let filter = input.filter().unwrap();
    let mut after = None;
    for _ in 0..pages {
        let page = cp
            .request_page(account, &filter, after.as_ref(), PAGE)
            .await
            .unwrap();
        let Some(next) = page.next_cursor else {
            return after;
        };
        after = FilterInput {
            cursor: Some(next),
            ..Default::default()
        }
        .cursor()
        .unwrap();
    }
    after
}

async fn time_pages(
    cp: &ControlPlane,
    account: AccountId,
    input: &FilterInput,
    after: Option<&Cursor>,
) -> (Duration, Duration) {
    let filter = input.filter().unwrap();
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let page = cp
            .request_page(account, &filter, after, PAGE)
            .await
            .unwrap();
        samples.push(started.elapsed());
        assert!(!page.data.is_empty(), "{input:?} pages something");
    }
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.95),
    )
}

async fn run(name: &str, backends: Backends, rows: usize) {
    let stack = Stack::start(backends, fast_config()).await;
    let account = AccountId::new();
    let seeding = Instant::now();
    seed(&stack, account, rows).await;
    seed(&stack, AccountId::new(), rows).await;
    sqlx::raw_sql("ANALYZE")
        .execute(&stack.backends.store.pool)
        .await
        .unwrap();
    println!(
        "{name}: seeded {} rows in {:.1} s",
        rows * 2,
        seeding.elapsed().as_secs_f64()
    );
    let cp = &stack.control_plane;

    let mut lookups = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let id = format!(
            "req_{}-{:08}",
            &account.to_string()[..8],
            (i * 1_609) % rows
        );
        let started = Instant::now();
        let found: Option<(String,)> =
            sqlx::query_as("SELECT event_id FROM requests WHERE account = $1 AND request_id = $2")
                .bind(account.to_string())
                .bind(&id)
                .fetch_optional(&stack.backends.store.pool)
                .await
                .unwrap();
        lookups.push(started.elapsed());
        assert!(found.is_some());
    }
    let base = percentile(&mut lookups, 0.95);
    println!(
        "  baseline: one request by id, p95 {:.2} ms",
        base.as_secs_f64() * 1e3
    );

    let f = |set: fn(&mut FilterInput)| {
        let mut input = FilterInput::default();
        set(&mut input);
        input
    };
    let cases: [(&str, FilterInput); 8] = [
        ("no filter", FilterInput::default()),
        ("tag (1 in 4)", f(|i| i.tag = Some("team=a".into()))),
        ("tag (1 in 1,000)", f(|i| i.tag = Some("rare".into()))),
        ("user (1 in 200)", f(|i| i.user = Some("user-42".into()))),
        ("key", f(|i| i.key = Some("key1".into()))),
        (
            "model + outcome=failed",
            f(|i| {
                i.model = Some("model-0".into());
                i.outcome = Some("failed".into());
            }),
        ),
        ("min_cost", f(|i| i.min_cost = Some("0.00009".into()))),
        (
            "one day",
            f(|i| {
                i.from = Some("2026-01-01".into());
                i.to = Some("2026-01-02".into());
            }),
        ),
    ];
    println!(
        "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "filter", "p50 first", "p95 first", "p50 deep", "p95 deep", "p95/base"
    );
    for (label, input) in cases.iter() {
        let first = time_pages(cp, account, input, None).await;
        let cursor = deep(cp, account, input, 100).await;
        let deep = time_pages(cp, account, input, cursor.as_ref()).await;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "  {label:<24} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.1}x",
            ms(first.0),
            ms(first.1),
            ms(deep.0),
            ms(deep.1),
            first.1.max(deep.1).as_secs_f64() / base.as_secs_f64()
        );
    }
    stack.stop().await;
}

fn main() {
    let rows = size("LOG_ROWS", 100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let only = std::env::var("LOG_ONLY").unwrap_or_default();
        if only != "sqlite" {
            run("PostgreSQL", Backends::distributed().await, rows).await;
        }
        if only != "postgres" {
            run("SQLite", Backends::embedded().await, rows).await;
        }
    });
}
