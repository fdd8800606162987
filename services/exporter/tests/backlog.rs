//! The exporter against real event logs and stores (embedded here, NATS +
//! PostgreSQL where the test says so): a dead backend's backlog stops at
//! its cap, dropping the oldest and saying so, a removed destination takes
//! its backlog with it, and sampling decides which requests go where.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use events::{
    AccountId, Event, Protocol, Sampling, TelemetryDestinationRemoved, TelemetryDestinationSet,
};
use exporter::{Exporter, ExporterConfig, Sealer};
use money::Money;
use test_support::backends::Backends;

fn destination(account: AccountId, sealer: &Sealer, endpoint: String) -> TelemetryDestinationSet {
    TelemetryDestinationSet {
        account,
        destination: uuid::Uuid::now_v7(),
        name: "dead".into(),
        preset: None,
        protocol: Protocol::HttpProtobuf,
        endpoint,
        header_names: Vec::new(),
        headers_sealed: sealer.seal(&[]).unwrap(),
        sampling: Sampling::All,
        capture_content: false,
        by: None,
    }
}

/// An exporter on `backends`, and what stops it.
async fn start(
    backends: &Backends,
    config: ExporterConfig,
    sealer: Arc<Sealer>,
) -> (Arc<Exporter>, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let exporter = Exporter::start(
        config,
        sealer,
        Arc::clone(&backends.log),
        backends.store.clone(),
        async {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    (exporter, stop)
}

async fn until(limit: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

async fn a_dead_backends_backlog_is_capped_and_removal_clears_it(backends: Backends) {
    let sealer = Arc::new(Sealer::new(&[3u8; 32]).unwrap());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let account = AccountId::new();
    let d = destination(account, &sealer, dead);
    let id = d.destination;
    backends.publish(Event::TelemetryDestinationSet(d)).await;
    let config = ExporterConfig {
        max_backlog: 10,
        backoff_min_ms: 100,
        backoff_max_ms: 200,
        ..ExporterConfig::default()
    };
    let (exporter, stop) = start(&backends, config, sealer).await;
    for seq in 1..=30 {
        backends
            .append(&test_support::backends::usage_event(
                account,
                seq,
                Money::from_nanos(1_000),
            ))
            .await;
    }
    let m = Arc::clone(exporter.metrics());
    // The read count moves before the backlog's (which is counted after
    // the commit): wait for the drops themselves.
    let capped = until(Duration::from_secs(20), || {
        m.events_read.load(Relaxed) >= 30
            && m.dropped_overflow.load(Relaxed) >= 20
            && m.backlog.load(Relaxed) <= 10
    })
    .await;
    assert!(
        capped,
        "backlog {} after {} events",
        m.backlog.load(Relaxed),
        m.events_read.load(Relaxed)
    );
    assert_eq!(m.dropped_overflow.load(Relaxed), 20);
    // The status table is written just after the counters move.
    let mut status = exporter::outbox::Status::default();
    let shown = until_async(Duration::from_secs(10), async || {
        status = exporter::outbox::status(&backends.store, id).await.unwrap();
        status.dropped == 20 && status.last_error.is_some()
    })
    .await;
    assert!(shown, "{status:?}");
    assert_eq!(status.backlog, 10, "{status:?}");
    assert!(m.retries.load(Relaxed) >= 1, "the dead backend was tried");
    assert!(exporter
        .to_prometheus()
        .contains("modelrouter_exporter_requests_dropped_total 20"));

    backends
        .publish(Event::TelemetryDestinationRemoved(
            TelemetryDestinationRemoved {
                account,
                destination: id,
                by: None,
            },
        ))
        .await;
    let cleared = until(Duration::from_secs(10), || {
        m.backlog.load(Relaxed) == 0 && m.destinations.load(Relaxed) == 0
    })
    .await;
    assert!(cleared, "backlog {}", m.backlog.load(Relaxed));
    let status = exporter::outbox::status(&backends.store, id).await.unwrap();
    assert_eq!(status.backlog, 0, "the rows went with the destination");
    let _ = stop.send(());
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_a_dead_backends_backlog_is_capped_and_removal_clears_it() {
    a_dead_backends_backlog_is_capped_and_removal_clears_it(Backends::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_a_dead_backends_backlog_is_capped_and_removal_clears_it() {
    a_dead_backends_backlog_is_capped_and_removal_clears_it(Backends::distributed().await).await;
}

async fn sampling_decides_which_requests_a_destination_gets(backends: Backends) {
    let sealer = Arc::new(Sealer::new(&[3u8; 32]).unwrap());
    let receiver = test_support::otlp::Receiver::start().await;
    let account = AccountId::new();
    let mut errors = destination(account, &sealer, receiver.http_url());
    errors.sampling = Sampling::ErrorsOnly;
    let mut half = destination(account, &sealer, receiver.http_url());
    half.sampling = Sampling::Ratio { ratio: 0.5 };
    let (errors_id, half_id) = (errors.destination, half.destination);
    backends
        .publish(Event::TelemetryDestinationSet(errors))
        .await;
    backends.publish(Event::TelemetryDestinationSet(half)).await;
    let (exporter, stop) = start(&backends, ExporterConfig::default(), sealer).await;
    let mut failed = 0;
    for seq in 1..=200u64 {
        let mut envelope =
            test_support::backends::usage_event(account, seq, Money::from_nanos(1_000));
        if let Event::UsageRecorded(u) = &mut envelope.event {
            if seq % 10 == 0 {
                u.outcome = events::Outcome::Failed;
                failed += 1;
            }
        }
        backends.append(&envelope).await;
    }
    let status = |id| {
        let store = backends.store.clone();
        async move { exporter::outbox::status(&store, id).await.unwrap() }
    };
    let delivered = until_async(Duration::from_secs(20), async || {
        let (e, h) = (status(errors_id).await, status(half_id).await);
        e.exported == failed && e.backlog == 0 && h.backlog == 0 && h.exported > 0
    })
    .await;
    let (e, h) = (status(errors_id).await, status(half_id).await);
    assert!(delivered, "errors only: {e:?}, half: {h:?}");
    assert_eq!(e.exported, 20, "only the failed requests");
    assert!(
        (70..=130).contains(&h.exported),
        "about half of 200: {}",
        h.exported
    );
    let roots: Vec<_> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    let failed_roots = roots
        .iter()
        .filter(|s| s.attr("modelrouter.outcome") == "failed")
        .count();
    assert!(failed_roots >= 20, "{failed_roots}");
    assert_eq!(roots.len() as i64, e.exported + h.exported);
    drop(exporter);
    let _ = stop.send(());
    backends.cleanup().await;
}

async fn until_async(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_sampling_decides_which_requests_a_destination_gets() {
    sampling_decides_which_requests_a_destination_gets(Backends::embedded().await).await;
}
