//! The projector against the real logs: it applies the control plane's
//! events among many usage records, and acks every record it skipped, so a
//! restarted projector does not read them again.

use std::sync::Arc;
use std::time::Duration;

use control_plane::projector::Projector;
use eventlog::EventLog;
use events::{
    AccountId, Envelope, Event, KeyIssued, PolicyView, ProviderBlock, KEYS_BUCKET, POLICIES_BUCKET,
};
use money::Money;
use test_support::backends::{usage_event, Backends};
use test_support::faults::RefusingPuts;

/// Publishes the issue of an API key of `account` whose digest repeats
/// `pair` (two hex digits) and whose name is `name`; returns the digest.
async fn issue_key(backends: &Backends, account: AccountId, pair: &str, name: &str) -> String {
    let digest = pair.repeat(32);
    backends
        .publish(Event::KeyIssued(KeyIssued {
            account,
            key: digest[..12].to_owned(),
            digest: digest.clone(),
            name: name.into(),
            prefix: format!("mr_sk_{pair}"),
            last_four: pair.repeat(2),
            by: None,
            admin: false,
        }))
        .await;
    digest
}

async fn skips_and_acks_usage_and_applies_its_own(backends: Backends) {
    backends.store.migrate().await.unwrap();
    let account = AccountId::new();
    for seq in 1..=300 {
        backends
            .append(&usage_event(account, seq, Money::from_nanos(1)))
            .await;
    }
    let digest = issue_key(&backends, account, "ab", "ci").await;
    for seq in 301..=320 {
        backends
            .append(&usage_event(account, seq, Money::from_nanos(1)))
            .await;
    }
    let projector = Arc::new(
        Projector::new(&*backends.log, backends.store.clone())
            .await
            .unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(
        Arc::clone(&projector).run(Arc::clone(&backends.log), async {
            let _ = stopped.await;
        }),
    );
    let keys = backends.log.bucket(KEYS_BUCKET).await.unwrap();
    let mut seen = false;
    for _ in 0..200 {
        if keys.get(&digest).await.unwrap().is_some() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the key reached the keys bucket");
    // The records after the key are acked too, within the projector's wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the projector stops")
        .unwrap();
    let mut again = backends.log.consumer("control-plane").await.unwrap();
    assert!(
        again
            .next(Duration::from_millis(500))
            .await
            .unwrap()
            .is_none(),
        "every record was acked"
    );
    drop(again);
    backends.cleanup().await;
}

/// A record of ours that cannot be applied (its table is gone for a while)
/// is applied once it can be, although usage records after it were acked.
async fn a_record_that_failed_is_applied_when_it_can_be(backends: Backends) {
    backends.store.migrate().await.unwrap();
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::raw_sql(&rename("access_applied", "access_applied_away"))
        .execute(&backends.store.pool)
        .await
        .unwrap();
    let projector = Arc::new(
        Projector::new(&*backends.log, backends.store.clone())
            .await
            .unwrap(),
    );
    let running =
        tokio::spawn(Arc::clone(&projector).run(Arc::clone(&backends.log), std::future::pending()));
    let account = AccountId::new();
    let digest = issue_key(&backends, account, "cd", "late").await;
    for seq in 1..=20 {
        backends
            .append(&usage_event(account, seq, Money::from_nanos(1)))
            .await;
    }
    // Failing meanwhile, and past the usage records' batched acks.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let keys = backends.log.bucket(KEYS_BUCKET).await.unwrap();
    assert!(keys.get(&digest).await.unwrap().is_none());
    sqlx::raw_sql(&rename("access_applied_away", "access_applied"))
        .execute(&backends.store.pool)
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..200 {
        if keys.get(&digest).await.unwrap().is_some() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    assert!(
        seen,
        "the key reached the keys bucket once its table was back"
    );
    backends.cleanup().await;
}

/// A key's record is acked only once its view is stored: the embedded log
/// writes views and acks without an fsync, which is safe only because a
/// view is written before its record's ack (a crash then loses both, and
/// the record comes again). While every put fails the key's record stays
/// unacked; once puts work the view is stored and the record acked.
async fn a_record_is_acked_only_after_its_view_is_stored(backends: Backends) {
    backends.store.migrate().await.unwrap();
    let refusing = Arc::new(RefusingPuts::new(Arc::clone(&backends.log)));
    let (_, running) = projector_on(&backends, Arc::clone(&refusing) as Arc<dyn EventLog>).await;
    let account = AccountId::new();
    let digest = issue_key(&backends, account, "ef", "refused").await;
    let issued = backends.log.last_seq().await.unwrap();
    let applied = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&backends.store.pool)
            .await
            .unwrap()
    };
    let mut tries = 0;
    while applied().await == 0 {
        tries += 1;
        assert!(tries < 600, "the key was never applied to the store");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Applied, its view refused: give the projector time to ack wrongly.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        backends.log.acked("control-plane").await.unwrap() < issued,
        "the record is not acked while its view is not stored"
    );
    refusing.refuse(false);
    let keys = backends.log.bucket(KEYS_BUCKET).await.unwrap();
    let mut tries = 0;
    while keys.get(&digest).await.unwrap().is_none()
        || backends.log.acked("control-plane").await.unwrap() < issued
    {
        tries += 1;
        assert!(tries < 600, "the view was never stored and acked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    backends.cleanup().await;
}

/// A change applied by the request that made it is what the `policies`
/// bucket holds when that request returns, although the durable consumer
/// republishes the same account meanwhile: a view it read before the
/// change must not be put after it. Blocks and unblocks alternate quickly,
/// so the consumer, a few events behind, races every one of them.
async fn the_bucket_holds_the_view_of_the_last_change(backends: Backends) {
    backends.store.migrate().await.unwrap();
    let projector = running_projector(&backends).await;
    alternate_blocks(&backends, &[projector]).await;
    backends.cleanup().await;
}

/// The same across two control-plane replicas (each with its consumer)
/// on one PostgreSQL: requests land on either, and each replica's
/// consumer races the other's requests. A replica publishes only while it
/// holds the database's views lock, so one holding it makes the other wait.
#[tokio::test]
async fn replicas_put_the_view_of_the_last_change() {
    let backends = Backends::distributed().await;
    backends.store.migrate().await.unwrap();
    let replicas = [
        running_projector(&backends).await,
        running_projector(&backends).await,
    ];
    alternate_blocks(&backends, &replicas).await;

    let account = AccountId::new();
    let envelope = Envelope::new(Event::ProviderBlocked(ProviderBlock {
        account,
        provider: "xai".into(),
        by: None,
    }));
    backends.append(&envelope).await;
    let other_replica = backends
        .store
        .exclusive(
            control_plane::projector::VIEWS_LOCK,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let applying = tokio::spawn({
        let replica = Arc::clone(&replicas[0]);
        async move { replica.apply_now(&envelope).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !applying.is_finished(),
        "a replica publishes while another holds the views lock"
    );
    other_replica.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), applying)
        .await
        .expect("published once the lock is free")
        .unwrap()
        .unwrap();
    let policies = backends.log.bucket(POLICIES_BUCKET).await.unwrap();
    let entry = policies.get(&account.to_string()).await.unwrap().unwrap();
    let view: PolicyView = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(view.blocked, ["xai"]);
    backends.cleanup().await;
}

/// A projector of `backends` whose durable consumer runs until the test ends.
async fn running_projector(backends: &Backends) -> Arc<Projector> {
    projector_on(backends, Arc::clone(&backends.log)).await.0
}

/// A projector on `log` (the backends' log, or one wrapping it) with its
/// durable consumer running, and that consumer's task.
async fn projector_on(
    backends: &Backends,
    log: Arc<dyn EventLog>,
) -> (Arc<Projector>, tokio::task::JoinHandle<()>) {
    let projector = Arc::new(Projector::new(&*log, backends.store.clone()).await.unwrap());
    let running = tokio::spawn(Arc::clone(&projector).run(log, std::future::pending()));
    (projector, running)
}

/// Blocks and unblocks a provider 1,000 times, each change recorded as a
/// request does (append, then apply at once) on the replicas in turn, and
/// checks the `policies` bucket holds that change's view when it returns.
async fn alternate_blocks(backends: &Backends, replicas: &[Arc<Projector>]) {
    let policies = backends.log.bucket(POLICIES_BUCKET).await.unwrap();
    let account = AccountId::new();
    let mut stale = Vec::new();
    for change in 0..1_000 {
        let block = ProviderBlock {
            account,
            provider: "openai".into(),
            by: None,
        };
        let blocked = change % 2 == 0;
        let envelope = Envelope::new(if blocked {
            Event::ProviderBlocked(block)
        } else {
            Event::ProviderUnblocked(block)
        });
        backends.append(&envelope).await;
        let replica = &replicas[change % replicas.len()];
        replica.apply_now(&envelope).await.unwrap();
        let entry = policies.get(&account.to_string()).await.unwrap().unwrap();
        let view: PolicyView = serde_json::from_slice(&entry.value).unwrap();
        if view.blocked.is_empty() == blocked {
            stale.push(change);
        }
    }
    assert!(
        stale.is_empty(),
        "after changes {stale:?} the bucket held the view from before them"
    );
}

/// A change whose view cannot be stored yet still succeeds for the request
/// that made it (it is in the log and the tables; an error would say
/// nothing changed, and a repeat would do it twice), and the durable
/// consumer stores the view once puts work.
async fn a_view_not_stored_now_is_stored_by_the_consumer(backends: Backends) {
    backends.store.migrate().await.unwrap();
    let refusing = Arc::new(RefusingPuts::new(Arc::clone(&backends.log)));
    let (projector, running) =
        projector_on(&backends, Arc::clone(&refusing) as Arc<dyn EventLog>).await;
    let account = AccountId::new();
    let envelope = Envelope::new(Event::ProviderBlocked(ProviderBlock {
        account,
        provider: "groq".into(),
        by: None,
    }));
    backends.append(&envelope).await;
    projector
        .apply_now(&envelope)
        .await
        .expect("the change is made although its view is refused");
    let folded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_blocks")
        .fetch_one(&backends.store.pool)
        .await
        .unwrap();
    assert_eq!(folded, 1, "the tables show the change at once");
    let policies = backends.log.bucket(POLICIES_BUCKET).await.unwrap();
    assert!(policies.get(&account.to_string()).await.unwrap().is_none());
    refusing.refuse(false);
    let mut tries = 0;
    while policies.get(&account.to_string()).await.unwrap().is_none() {
        tries += 1;
        assert!(tries < 600, "the consumer never stored the view");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    backends.cleanup().await;
}

test_support::on_both!(skips_and_acks_usage_and_applies_its_own);
test_support::on_both!(a_view_not_stored_now_is_stored_by_the_consumer);
test_support::on_both!(the_bucket_holds_the_view_of_the_last_change);
test_support::on_both!(a_record_that_failed_is_applied_when_it_can_be);
test_support::on_both!(a_record_is_acked_only_after_its_view_is_stored);
