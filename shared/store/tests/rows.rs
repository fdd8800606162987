//! Multi-row statements on both backends, past one statement's parameter
//! limit: every row lands once, `RETURNING` reports only the fresh ones,
//! and `IN` look-ups find every key.

use store::rows::{fetch_in, Rows, Transaction, Value};
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
    let mut tx = store.pool.begin().await.unwrap();
    let mut first = Rows::new("INSERT INTO t (id, n, note)", 3, "RETURNING id");
    for i in 0..ROWS / 2 {
        first.push([
            Value::from(format!("k{i}")),
            Value::from(i as i64),
            Value::MaybeText(None),
        ]);
    }
    assert_eq!(first.run(&mut tx).await.unwrap().len(), ROWS / 2);

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
    assert_eq!(again.run(&mut tx).await.unwrap().len(), ROWS - ROWS / 2);

    let keys: Vec<String> = (0..ROWS + 10).map(|i| format!("k{i}")).collect();
    let found = fetch_in(
        &mut tx,
        "SELECT id FROM t WHERE n >= $1 AND id",
        &[Value::Int(0)],
        &keys,
        "",
    )
    .await
    .unwrap();
    assert_eq!(found.len(), ROWS);
    // Each row holds its own values: the batch's cuts into statements of a
    // power of two rows each shifted nothing between rows.
    let (matching,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM t WHERE n = CAST(SUBSTR(id, 2) AS BIGINT) AND note = 'new'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(matching, (ROWS - ROWS / 2) as i64);
    // An `IN` list padded by repeating its last key (3 keys listed as 4)
    // still finds each row once.
    let three: Vec<String> = ["k0", "k1", "k2"].map(String::from).to_vec();
    let found = fetch_in(&mut tx, "SELECT id FROM t WHERE id", &[], &three, "")
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
    let nothing = Rows::new("INSERT INTO t (id, n, note)", 3, "");
    assert!(nothing.is_empty());
    assert!(nothing.run(&mut tx).await.unwrap().is_empty());
    values_survive_the_trip(&mut tx).await;
    tx.commit().await.unwrap();
}

/// Whatever a row carries comes back as it went in: quotes, backslashes,
/// newlines, non-ASCII, the integer extremes, NULL and the empty string.
async fn values_survive_the_trip(tx: &mut Transaction<'_>) {
    use sqlx::Row;
    let texts = [
        "it's \"quoted\" \\ back\\slash",
        "line\nbreak\ttab\r",
        "ünïcødé ✓ 日本 🚀",
        "{\"json\": [1, 2]}",
        "",
        "\u{7f}\u{1}",
        "\u{1f}\u{1e}\u{1d} unit and record separators",
        "NULL",
        "a,b {c} \\N",
        "\u{E000}\u{F8FF}",
    ];
    let mut rows = Rows::new("INSERT INTO t (id, n, note)", 3, "");
    let mut expected = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let n = [i64::MIN, i64::MAX, -1, 0, 1, 42, 2, 3, 4, 5][i];
        let note = (i % 2 == 0).then(|| text.to_string());
        let id = format!("{text}#{i}");
        rows.push([
            Value::from(id.clone()),
            Value::from(n),
            Value::MaybeText(note.clone()),
        ]);
        expected.push((id, n, note));
    }
    rows.run(tx).await.unwrap();
    let ids: Vec<String> = expected.iter().map(|(id, _, _)| id.clone()).collect();
    let found = fetch_in(
        tx,
        "SELECT id, n, note FROM t WHERE id",
        &[],
        &ids,
        "ORDER BY n",
    )
    .await
    .unwrap();
    let mut got: Vec<(String, i64, Option<String>)> = found
        .iter()
        .map(|row| (row.get("id"), row.get("n"), row.get("note")))
        .collect();
    got.sort_by_key(|(_, n, _)| *n);
    expected.sort_by_key(|(_, n, _)| *n);
    assert_eq!(got, expected);
    one_row_of_empty_text(tx).await;
    every_separator_taken(tx).await;
}

/// One row whose only text is empty is still one row.
async fn one_row_of_empty_text(tx: &mut Transaction<'_>) {
    sqlx::raw_sql("CREATE TABLE e (id TEXT NOT NULL)")
        .execute(&mut **tx)
        .await
        .unwrap();
    let mut rows = Rows::new("INSERT INTO e (id)", 1, "");
    rows.push([Value::from("")]);
    assert_eq!(rows.execute(tx).await.unwrap(), 1);
    let found = fetch_in(tx, "SELECT id FROM e WHERE id", &[], &["".into()], "")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

/// Texts that hold every character PostgreSQL's statements could use to
/// separate them still land whole (the rows are then bound one by one).
async fn every_separator_taken(tx: &mut Transaction<'_>) {
    use sqlx::Row;
    let all: String = ('\u{1}'..'\u{20}')
        .chain('\u{E000}'..='\u{F8FF}')
        .chain('\u{F0000}'..='\u{FFFFD}')
        .collect();
    let mut rows = Rows::new("INSERT INTO t (id, n, note)", 3, "RETURNING id");
    rows.push([
        Value::from("every"),
        Value::from(7),
        Value::from(all.clone()),
    ]);
    rows.push([Value::from("none"), Value::from(8), Value::MaybeText(None)]);
    assert_eq!(rows.run(tx).await.unwrap().len(), 2);
    let keys = ["every".to_string(), all.clone()];
    let found = fetch_in(tx, "SELECT note FROM t WHERE id", &[], &keys, "")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get::<String, _>("note"), all);
}

/// An insert that fails part-way, inside a transaction: on SQLite it ran
/// as `INSERT OR FAIL`, so the rows before the failing one stay until the
/// rollback (what spares SQLite its statement journal); on PostgreSQL the
/// statement is undone alone. Either way the rollback leaves nothing.
async fn a_failed_insert_is_undone_by_its_transaction(store: &Store, keeps_earlier_rows: bool) {
    sqlx::raw_sql("CREATE TABLE f (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(&store.pool)
        .await
        .unwrap();
    let mut tx = store.pool.begin().await.unwrap();
    let mut rows = Rows::new("INSERT INTO f (id, n)", 2, "");
    for id in ["a", "b", "a", "c"] {
        rows.push([Value::from(id), Value::Int(1)]);
    }
    let error = rows.execute(&mut tx).await.unwrap_err();
    assert!(
        error
            .as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{error}"
    );
    if keeps_earlier_rows {
        let (inside,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM f")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            inside, 2,
            "the rows before the failing one, until the rollback"
        );
    }
    tx.rollback().await.unwrap();
    let (after,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM f")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(after, 0);
}

#[tokio::test]
async fn a_failed_insert_is_undone_on_postgres() {
    let db = TestDb::new().await;
    a_failed_insert_is_undone_by_its_transaction(&Store::connect(&db.url).await.unwrap(), false)
        .await;
}

#[tokio::test]
async fn a_failed_insert_is_undone_on_sqlite() {
    let dir = TempDir::new();
    let url = format!("sqlite:{}", dir.0.join("f.db").display());
    a_failed_insert_is_undone_by_its_transaction(&Store::connect(&url).await.unwrap(), true).await;
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
