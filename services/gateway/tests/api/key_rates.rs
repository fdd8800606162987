//! Per-minute key limits across replicas: two gateway processes' meters
//! share their counts through the real event log (NATS), so what one
//! admitted counts on the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{AccountId, KeyLimits};
use gateway::error::GatewayError;
use gateway::key_limits::{share, KeyMeter};
use gateway::keys::Caller;
use test_support::backends::Backends;

fn caller(rpm: u32) -> Caller {
    Caller {
        account: AccountId::new(),
        key: "shared-key".into(),
        limits: Arc::new(KeyLimits {
            rpm: Some(rpm),
            ..KeyLimits::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_replicas_requests_count_on_another() {
    let backends = Backends::distributed().await;
    let (a, b) = (Arc::new(KeyMeter::default()), Arc::new(KeyMeter::default()));
    share(&a, "gw-a", Arc::clone(&backends.log));
    share(&b, "gw-b", Arc::clone(&backends.log));
    // A admits 20 under a generous limit; B's limit for the key is 10.
    let generous = caller(100);
    for _ in 0..20 {
        a.admit(&generous, Instant::now()).unwrap();
    }
    let mut seen = (0, 0);
    for _ in 0..100 {
        seen = b.fleet_use("shared-key");
        if seen.0 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // At least 18 even if a minute turned meanwhile (the previous minute
    // counts for its share still in the window).
    assert!(seen.0 >= 18, "B knows A's requests: {seen:?}");
    assert_eq!(
        a.fleet_use("shared-key"),
        (0, 0),
        "a process does not count itself twice"
    );
    match b.admit(&caller(10), Instant::now()) {
        Err(GatewayError::KeyRateLimited { retry_after_s, .. }) => {
            assert!((1..=60).contains(&retry_after_s))
        }
        other => panic!("B refuses: {other:?}"),
    }
    backends.cleanup().await;
}
