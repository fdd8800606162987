//! How fast the exporter delivers, and in how much memory, with 1,000
//! tenants of which 10 have dead backends, on NATS + PostgreSQL (the
//! distributed deployment it runs in).
//!
//! 1,000 destinations are created through the log (990 pointing at a local
//! OTLP/HTTP endpoint that accepts and counts, 10 at a closed port), then
//! `EXPORT_EVENTS` usage events (default 50,000, one fallback attempt each,
//! so three spans) spread over the 1,000 accounts are appended in records of
//! 100, as a busy gateway batches them. Timed from the exporter's start
//! until every live destination's spans are delivered; RSS is sampled every
//! 50 ms. Baseline, in the same run: appending those events to the log (the
//! rate the log takes usage events from gateways). Run with
//! `cargo bench -p exporter --bench export`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::Outgoing;
use events::{
    AccountId, AttemptRecord, Envelope, Event, Protocol, Sampling, TelemetryDestinationSet,
};
use exporter::{Exporter, ExporterConfig, Sealer};
use money::Money;
use test_support::backends::Backends;

const TENANTS: usize = 1_000;
const DEAD: usize = 10;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's resident memory now, in MB (Linux).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// An OTLP/HTTP endpoint that takes every export and counts the bytes.
async fn sink() -> (String, Arc<AtomicU64>) {
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&bytes);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            counted.fetch_add(body.len() as u64, Relaxed);
            async {
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bytes)
}

async fn append(backends: &Backends, envelopes: &[Envelope], per_record: usize) {
    let records: Vec<(String, Vec<u8>)> = envelopes
        .chunks(per_record)
        .map(|chunk| (chunk[0].id.to_string(), Envelope::encode_all(chunk)))
        .collect();
    for batch in records.chunks(100) {
        let items: Vec<Outgoing> = batch
            .iter()
            .map(|(id, payload)| Outgoing {
                subject: events::subjects::USAGE,
                id,
                payload,
            })
            .collect();
        backends.log.append_batch(&items).await.unwrap();
    }
}

fn usage(account: AccountId, seq: u64) -> Envelope {
    let mut envelope = test_support::backends::usage_event(account, seq, Money::from_nanos(41_600));
    if let Event::UsageRecorded(u) = &mut envelope.event {
        u.attempts.push(AttemptRecord {
            provider: "openai".into(),
            model: "gpt-4.1".into(),
            status: Some(503),
            error: "HTTP 503: overloaded".into(),
            latency_ms: 12,
            skipped: false,
        });
        u.finish_reasons = vec!["stop".into()];
    }
    envelope
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events = size("EXPORT_EVENTS", 50_000);
    let backends = Backends::distributed().await;
    let sealer = Arc::new(Sealer::new(&[7u8; 32]).unwrap());
    let (live_url, received) = sink().await;
    let dead_url = {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1/traces", closed.local_addr().unwrap())
    };
    let accounts: Vec<AccountId> = (0..TENANTS).map(|_| AccountId::new()).collect();
    let destinations: Vec<Envelope> = accounts
        .iter()
        .enumerate()
        .map(|(i, &account)| {
            Envelope::new(Event::TelemetryDestinationSet(TelemetryDestinationSet {
                account,
                destination: uuid::Uuid::now_v7(),
                name: format!("tenant {i}"),
                preset: None,
                protocol: Protocol::HttpProtobuf,
                endpoint: if i < DEAD {
                    dead_url.clone()
                } else {
                    live_url.clone()
                },
                header_names: vec!["x-api-key".into()],
                headers_sealed: sealer
                    .seal(&[("x-api-key".into(), format!("key-{i}"))])
                    .unwrap(),
                sampling: Sampling::All,
                capture_content: false,
                by: None,
            }))
        })
        .collect();
    for d in &destinations {
        backends
            .log
            .append(events::subjects::ACCESS, &d.id.to_string(), &d.encode())
            .await
            .unwrap();
    }
    let usage: Vec<Envelope> = (0..events)
        .map(|n| usage(accounts[n % TENANTS], n as u64 + 1))
        .collect();
    let spans_per_event = exporter::spans::of(&usage[0]).len() as u64;
    let live_events = (0..events).filter(|n| n % TENANTS >= DEAD).count() as u64;

    let appending = Instant::now();
    append(&backends, &usage, 100).await;
    let append_s = appending.elapsed().as_secs_f64();

    let rss_before = rss_mb();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ExporterConfig {
        backoff_max_ms: 5_000,
        ..ExporterConfig::default()
    };
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
    let want = live_events * spans_per_event;
    let mut peak = rss_before;
    let mut read_all = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    while exporter.metrics().exported.load(Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(rss_mb());
        if read_all.is_none() && exporter.metrics().events_read.load(Relaxed) >= events as u64 {
            read_all = Some(started.elapsed().as_secs_f64());
        }
    }
    let took = started.elapsed().as_secs_f64();
    let exported = exporter.metrics().exported.load(Relaxed);
    let backlog = exporter.metrics().backlog.load(Relaxed);
    let _ = stop.send(());

    println!("exporter: {TENANTS} tenants ({DEAD} with dead backends), {events} usage events, {spans_per_event} spans each, NATS + PostgreSQL");
    println!(
        "  baseline: appending the events to the log: {:.0} events/s",
        events as f64 / append_s
    );
    println!(
        "  exported {exported} of {want} live spans in {took:.1} s: {:.0} spans/s, {:.0} requests/s ({:.2}x the append rate)",
        exported as f64 / took,
        live_events as f64 / took,
        (live_events as f64 / took) / (events as f64 / append_s),
    );
    if let Some(read) = read_all {
        println!(
            "  the follower had queued every event after {read:.1} s ({:.0} events/s)",
            events as f64 / read
        );
    }
    println!(
        "  left waiting for the {DEAD} dead backends: {backlog} requests (expected {})",
        events - live_events as usize
    );
    println!(
        "  received {:.1} MB of OTLP protobuf",
        received.load(Relaxed) as f64 / 1e6
    );
    println!(
        "  RSS: {rss_before:.0} MB before start, peak {peak:.0} MB while exporting (+{:.0} MB)",
        peak - rss_before
    );
    drop(exporter);
    backends.cleanup().await;
}
