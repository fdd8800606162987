//! `GET /livez` and `GET /readyz`: what a load balancer or Kubernetes asks
//! every service, without authentication and without tenant data.
//!
//! - `/livez` answers 200 while the process can serve HTTP at all; a
//!   failing liveness probe means "restart me".
//! - `/readyz` answers 200 only when every check the service registered
//!   holds (its event log answers, its migrations are applied, its views
//!   are loaded…), and 503 naming the ones that do not; also 503 while the
//!   service drains after SIGTERM, so traffic moves elsewhere before it
//!   stops accepting connections. A failing readiness probe means "send
//!   nothing new here", never "restart me".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// How long one readiness check may take before it counts as failed, so a
/// hung dependency turns the probe red instead of hanging it.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A condition that becomes true once (a view loaded, a drain begun).
#[derive(Debug, Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    /// Makes it true.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether it is true.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How long a check's answer that asked another service (the event log, the
/// database) is reused: `/readyz` takes no key, so whoever calls it must not
/// be able to turn each call into a database query.
pub const REUSE_FOR: Duration = Duration::from_secs(1);

/// A readiness check: `Ok` when it holds, else why not.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The last answer of a check, and when it was given.
type Memo = Arc<tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>>;

/// One named check; `memo` is set for the checks whose answers are reused.
#[derive(Clone)]
struct Named {
    name: &'static str,
    check: Check,
    memo: Option<Memo>,
}

impl Named {
    async fn run(&self) -> Result<(), String> {
        let Some(memo) = &self.memo else {
            return bounded(&self.check).await;
        };
        // Held while checking, so concurrent probes wait for one answer.
        let mut last = memo.lock().await;
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < REUSE_FOR {
                return result.clone();
            }
        }
        let result = bounded(&self.check).await;
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

async fn bounded(check: &Check) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// A service's probes: its named readiness checks and its drain flag.
#[derive(Clone, Default)]
pub struct Probes {
    checks: Vec<Named>,
    draining: Flag,
}

impl Probes {
    /// No checks yet: ready, until checks are added.
    pub fn new() -> Probes {
        Probes::default()
    }

    /// Adds the check `name`, which asks something outside the process: its
    /// answer is reused for [`REUSE_FOR`].
    pub fn check(&mut self, name: &'static str, check: Check) -> &mut Probes {
        self.checks.push(Named {
            name,
            check,
            memo: Some(Memo::default()),
        });
        self
    }

    /// Adds `name`, which holds once `flag` is set; `waiting` says what it waits for.
    pub fn flag(&mut self, name: &'static str, flag: Flag, waiting: &'static str) -> &mut Probes {
        let check: Check = Arc::new(move || {
            let ready = flag.is_set();
            Box::pin(async move {
                match ready {
                    true => Ok(()),
                    false => Err(waiting.to_owned()),
                }
            })
        });
        self.checks.push(Named {
            name,
            check,
            memo: None,
        });
        self
    }

    /// Set when the service begins to drain; `/readyz` answers 503 from then on.
    pub fn draining(&self) -> Flag {
        self.draining.clone()
    }

    /// The two routes.
    pub fn router(self) -> Router {
        let probes = Arc::new(self);
        Router::new()
            .route("/livez", get(|| async { Json(json!({"status": "live"})) }))
            .route(
                "/readyz",
                get(move || {
                    let probes = Arc::clone(&probes);
                    async move { probes.readiness().await }
                }),
            )
    }

    /// Runs every check at once (each bounded by [`CHECK_TIMEOUT`]).
    async fn readiness(&self) -> Response {
        let results = futures_util::future::join_all(
            self.checks
                .iter()
                .map(|named| async move { (named.name, named.run().await) }),
        )
        .await;
        let ready = results.iter().all(|(_, r)| r.is_ok()) && !self.draining.is_set();
        let checks: Map<String, Value> = results
            .into_iter()
            .map(|(name, result)| {
                let value = match result {
                    Ok(()) => Value::from("ok"),
                    Err(why) => Value::from(why),
                };
                (name.to_owned(), value)
            })
            .collect();
        let status = match (ready, self.draining.is_set()) {
            (_, true) => "draining",
            (true, false) => "ready",
            (false, false) => "not_ready",
        };
        let code = match ready {
            true => StatusCode::OK,
            false => StatusCode::SERVICE_UNAVAILABLE,
        };
        (code, Json(json!({"status": status, "checks": checks}))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower_service::Service;

    async fn get(router: &Router, path: &str) -> (StatusCode, Value) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router.clone().call(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn ready_only_when_every_check_holds_and_not_draining() {
        let views = Flag::default();
        let mut probes = Probes::new();
        probes
            .flag("views", views.clone(), "views not loaded yet")
            .check("log", Arc::new(|| Box::pin(async { Ok(()) })));
        let draining = probes.draining();
        let router = probes.router();
        assert_eq!(get(&router, "/livez").await.0, StatusCode::OK);
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["checks"]["views"], "views not loaded yet");
        assert_eq!(body["checks"]["log"], "ok");
        views.set();
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        draining.set();
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "draining");
        assert_eq!(get(&router, "/livez").await.0, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outside_checks_answer_is_reused_for_a_second() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut probes = Probes::new();
        let counted = Arc::clone(&calls);
        probes.check(
            "store",
            Arc::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Ok(()) })
            }),
        );
        let router = probes.router();
        for _ in 0..50 {
            assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(REUSE_FOR).await;
        get(&router, "/readyz").await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_fails_within_the_timeout() {
        let mut probes = Probes::new();
        probes.check(
            "store",
            Arc::new(|| Box::pin(std::future::pending::<Result<(), String>>())),
        );
        let (status, body) = get(&probes.router(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["checks"]["store"]
            .as_str()
            .unwrap()
            .contains("no answer"));
    }
}
