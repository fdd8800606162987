//! Every SQLite connection the pool opens gets the store's settings, not
//! only the first: the pool replaces connections after their idle time or
//! lifetime, and a replacement with SQLite's defaults would checkpoint
//! more often, cache a sixteenth of the pages and write its statement
//! journals and sorts to files under `/var/tmp`. A new database file gets
//! 16 KiB pages; one made before keeps its 4 KiB ones, and either
//! checkpoints every 32 MiB of WAL.

use store::Store;
use test_support::backends::TempDir;

async fn settings(conn: &mut sqlx::AnyConnection) -> (String, Vec<i64>) {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let mut numbers = Vec::new();
    for pragma in [
        "synchronous",
        "wal_autocheckpoint",
        "cache_size",
        "temp_store",
        "page_size",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("PRAGMA {pragma}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        numbers.push(n);
    }
    (mode, numbers)
}

#[tokio::test]
async fn a_replaced_connection_has_the_same_settings() {
    let dir = TempDir::new();
    let url = format!("sqlite:{}", dir.0.join("s.db").display());
    let store = Store::connect(&url).await.unwrap();
    let expected = ("wal".to_owned(), vec![2, 2048, -32768, 2, 16384]);
    let mut first = store.pool.acquire().await.unwrap();
    assert_eq!(settings(&mut first).await, expected);
    // Closed instead of returned: the pool must open a new one.
    first.close().await.unwrap();
    let mut second = store.pool.acquire().await.unwrap();
    assert_eq!(settings(&mut second).await, expected);
}

/// A file made with SQLite's 4 KiB pages (every data dir before 16 KiB
/// pages) keeps them, and its checkpoint threshold is the same 32 MiB,
/// counted in its own pages.
#[tokio::test]
async fn a_file_made_with_smaller_pages_keeps_them_and_checkpoints_at_the_same_size() {
    use sqlx::Connection;
    let dir = TempDir::new();
    let url = format!("sqlite:{}?mode=rwc", dir.0.join("old.db").display());
    sqlx::any::install_default_drivers();
    let mut old = sqlx::AnyConnection::connect(&url).await.unwrap();
    for statement in [
        "PRAGMA page_size = 4096",
        "PRAGMA journal_mode = WAL",
        "CREATE TABLE kept (x INTEGER)",
        "INSERT INTO kept VALUES (1)",
    ] {
        sqlx::query(statement).execute(&mut old).await.unwrap();
    }
    old.close().await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    let mut conn = store.pool.acquire().await.unwrap();
    let (_, numbers) = settings(&mut conn).await;
    assert_eq!(
        (numbers[1], numbers[4]),
        (8192, 4096),
        "checkpoint, page size"
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM kept")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(kept, 1);
}
