//! Every SQLite connection the pool opens gets the store's settings, not
//! only the first: the pool replaces connections after their idle time or
//! lifetime, and a replacement with SQLite's defaults would checkpoint
//! more often, cache a sixteenth of the pages and write its statement
//! journals and sorts to files under `/var/tmp`. A new database file gets
//! 16 KiB pages.

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
