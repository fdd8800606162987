//! `Store::exclusive` on PostgreSQL: a second holder waits for the first
//! (two pools, as two replicas would be), and gives up with an error after
//! its wait instead of hanging.

use std::time::Duration;

use store::Store;
use test_support::backends::TestDb;

const KEY: i64 = 0x7465_7374;

#[tokio::test]
async fn a_second_holder_waits_then_gives_up() {
    let db = TestDb::new().await;
    let first = Store::connect(&db.url).await.unwrap();
    let second = Store::connect(&db.url).await.unwrap();
    let held = first.exclusive(KEY, Duration::from_secs(10)).await.unwrap();

    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        second.exclusive(KEY, Duration::from_millis(200)),
    )
    .await
    .expect("the wait is bounded by its own timeout");
    let error = refused.err().expect("held elsewhere: an error").to_string();
    assert!(error.contains("lock timeout"), "{error}");

    let waiting = tokio::spawn(async move {
        let again = second.exclusive(KEY, Duration::from_secs(10)).await;
        again.map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second holder waits for the first"
    );
    held.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("taken once released")
        .unwrap()
        .unwrap();
}

/// On SQLite it holds no connection: the pool has one, which the section
/// itself needs for its reads.
#[tokio::test]
async fn on_sqlite_it_holds_no_connection() {
    let dir = test_support::backends::TempDir::new();
    let url = format!("sqlite:{}", dir.0.join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let held = store.exclusive(KEY, Duration::from_secs(1)).await.unwrap();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&store.pool),
    )
    .await
    .expect("the pool's one connection is free");
    assert_eq!(read.unwrap(), 1);
    held.release().await.unwrap();
}
