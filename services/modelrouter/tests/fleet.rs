//! Running as a fleet: services started together on one fresh database,
//! probes a load balancer can use, graceful stops, breakers shared between
//! gateway processes.

use std::time::Duration;

use test_support::backends::{TestDb, NATS_URL};
use test_support::deployment::Deployment;

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");

/// Eight pools migrating one fresh database at once apply each migration
/// exactly once between them, and none fails.
#[tokio::test]
async fn concurrent_migrations_apply_each_version_once() {
    let db = TestDb::new().await;
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(store::Store::connect(&db.url).await.unwrap());
    }
    let runs = futures_util::future::join_all(stores.iter().map(store::Store::migrate)).await;
    let mut applied: Vec<i64> = Vec::new();
    for run in runs {
        applied.extend(run.expect("every concurrent migrate succeeds"));
    }
    applied.sort_unstable();
    let (versions,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(&stores[0].pool)
        .await
        .unwrap();
    let expected: Vec<i64> = (1..=versions).collect();
    assert_eq!(applied, expected, "each version applied once, by one of them");
}

/// `modelrouter ledger`, `control-plane` and three `migrate` commands
/// started at the same instant on a fresh database all come up.
#[tokio::test]
async fn services_started_together_on_a_fresh_database_all_come_up() {
    let db = TestDb::new().await;
    let deployment = Deployment::new(BIN, NATS_URL, &db.url);
    let migrations = (0..3).map(|n| {
        let mut command = deployment.command(&["migrate"], &format!("migrate-{n}"));
        async move { command.output().await.expect("modelrouter runs") }
    });
    let mut control_plane = deployment.command(&["control-plane"], "cp");
    control_plane.env("MODELROUTER_LISTEN", "127.0.0.1:0");
    let (ledger, cp, migrated) = tokio::join!(
        deployment.start(deployment.command(&["ledger"], "ledger"), "ledger"),
        deployment.start(control_plane, "listening"),
        futures_util::future::join_all(migrations),
    );
    for output in migrated {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop((ledger, cp));
}
