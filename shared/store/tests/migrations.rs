//! Migrations on both backends: a database a newer build migrated is
//! refused with the versions named, and left as it is.

use store::{Store, StoreError};
use test_support::backends::{TempDir, TestDb};

async fn refuses_a_newer_schema(store: &Store) {
    store.migrate().await.unwrap();
    assert!(store.migrate().await.unwrap().is_empty(), "nothing twice");
    sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
        .execute(&store.pool)
        .await
        .unwrap();
    let error = store
        .migrate()
        .await
        .expect_err("a newer schema is refused");
    assert!(
        matches!(error, StoreError::Newer { found: 9999, .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("9999") && message.contains("newer than this build"),
        "{message}"
    );
    let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert!(versions > 1, "the database is left as it was");
}

#[tokio::test]
async fn a_newer_schema_is_refused_on_postgres() {
    let db = TestDb::new().await;
    refuses_a_newer_schema(&Store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn a_newer_schema_is_refused_on_sqlite() {
    let dir = TempDir::new();
    let url = format!("sqlite:{}", dir.0.join("t.db").display());
    refuses_a_newer_schema(&Store::connect(&url).await.unwrap()).await;
}
