//! Multi-row statements on both backends, past one statement's parameter
//! limit: every row lands once, `RETURNING` reports only the fresh ones,
//! and `IN` look-ups find every key.

use store::rows::{fetch_in, Rows, Value};
use store::Store;
use test_support::backends::{TempDir, TestDb};

/// More rows than one statement may bind on either backend (3 values each:
/// 66,000 parameters, past PostgreSQL's 65,535 and SQLite's 32,766).
const ROWS: usize = 22_000;

async fn exercise(store: &Store) {
    sqlx::raw_sql("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, note TEXT)")
        .execute(&store.pool)
        .await
        .unwrap();
    let mut conn = store.pool.acquire().await.unwrap();
    let mut first = Rows::new("INSERT INTO t (id, n, note)", 3, "RETURNING id");
    for i in 0..ROWS / 2 {
        first.push([
            Value::from(format!("k{i}")),
            Value::from(i as i64),
            Value::MaybeText(None),
        ]);
    }
    assert_eq!(first.run(&mut conn).await.unwrap().len(), ROWS / 2);

    let mut again = Rows::new(
        "INSERT INTO t (id, n, note)",
        3,
        "ON CONFLICT (id) DO UPDATE SET n = t.n + excluded.n, note = excluded.note
         WHERE t.n < 0 RETURNING id",
    );
    for i in 0..ROWS {
        again.push([
            Value::from(format!("k{i}")),
            Value::from(i as i64),
            Value::MaybeText(Some("new".into())),
        ]);
    }
    assert_eq!(again.len(), ROWS);
    // Only the rows that were not there before are inserted (the update's
    // condition never holds).
    assert_eq!(again.run(&mut conn).await.unwrap().len(), ROWS - ROWS / 2);

    let keys: Vec<String> = (0..ROWS + 10).map(|i| format!("k{i}")).collect();
    let found = fetch_in(
        &mut conn,
        "SELECT id FROM t WHERE n >= $1 AND id",
        &[Value::Int(0)],
        &keys,
        "",
    )
    .await
    .unwrap();
    assert_eq!(found.len(), ROWS);
    let nothing = Rows::new("INSERT INTO t (id, n, note)", 3, "");
    assert!(nothing.is_empty());
    assert!(nothing.run(&mut conn).await.unwrap().is_empty());
}

#[tokio::test]
async fn many_rows_and_keys_on_postgres() {
    let db = TestDb::new().await;
    exercise(&Store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn many_rows_and_keys_on_sqlite() {
    let dir = TempDir::new();
    let url = format!("sqlite:{}", dir.0.join("t.db").display());
    exercise(&Store::connect(&url).await.unwrap()).await;
}
