//! Request traces on `modelrouter up`, received by a real OTLP receiver
//! (`test_support::otlp`, from the official protobuf definitions): GenAI
//! attributes and parent/child structure, tenants kept apart, a backend
//! that is down for a while, and an exporter killed mid-export.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use test_support::dashboard::Browser;
use test_support::deployment::{kill9, temp_dir, up, Up};
use test_support::header;
use test_support::otlp::{Receiver, Span};

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");

/// Fast retries, so a returning backend is noticed within a second.
const FAST: [(&str, &str); 1] = [("MODELROUTER_EXPORTER_BACKOFF_MAX_MS", "1000")];

struct Admin {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Admin {
    fn of(up: &Up) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            url: up.url.clone(),
            key: up.operator_key().expect("the operator's admin key"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("up answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn destination(&self, body: Value) -> String {
        let (status, created) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/telemetry/destinations",
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().expect("id").to_owned()
    }
}

async fn chat(up: &Up, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", up.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("up answers")
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// The spans of the trace of `request_id`, root first.
fn trace_of(spans: &[Span], request_id: &str) -> Vec<Span> {
    let mut of: Vec<Span> = spans
        .iter()
        .filter(|s| s.trace_id == request_id.trim_start_matches("req_"))
        .cloned()
        .collect();
    of.sort_by_key(|s| {
        (
            !s.parent_span_id.is_empty(),
            s.attr("modelrouter.attempt.index")
                .parse::<i64>()
                .unwrap_or(-1),
        )
    });
    of.dedup_by(|a, b| a.span_id == b.span_id);
    of
}

fn has_trace(spans: &[Span], request_id: &str) -> bool {
    spans
        .iter()
        .any(|s| s.trace_id == request_id.trim_start_matches("req_") && s.parent_span_id.is_empty())
}

/// Checks what every trace has: one root (server kind) whose children all
/// point at it and lie within it.
fn assert_tree(trace: &[Span], request_id: &str) -> Span {
    let root = trace
        .first()
        .unwrap_or_else(|| panic!("no spans for {request_id}"))
        .clone();
    assert!(root.parent_span_id.is_empty(), "{root:?}");
    assert_eq!(root.kind, 2, "the root is a server span");
    assert_eq!(root.attr("modelrouter.request_id"), request_id);
    assert_eq!(root.service, "model-router");
    assert!(root.end_ns >= root.start_ns, "{root:?}");
    for child in &trace[1..] {
        assert_eq!(child.parent_span_id, root.span_id, "{child:?}");
        assert_eq!(child.kind, 3, "attempts are client spans");
        assert!(
            child.start_ns >= root.start_ns && child.end_ns <= root.end_ns,
            "{child:?} within {root:?}"
        );
    }
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_stream_fallback_embeddings_and_failure_arrive_as_genai_traces() {
    let receiver = Receiver::start().await;
    let dir = temp_dir("telemetry-shapes");
    let up = up(BIN, &dir, &FAST).await;
    let key = up.printed_key.clone().expect("key");
    let admin = Admin::of(&up);
    admin
        .destination(json!({"name": "collector", "endpoint": receiver.http_url(), "protocol": "http/protobuf",
                             "headers": {"X-Tenant-Token": "alpha-token"}}))
        .await;

    // A chat request, pinned to the tier.
    let plain = chat(&up, &key, json!({"model": "standard", "prefer": "cheap", "messages": [{"role": "user", "content": "Say hello"}]})).await;
    assert_eq!(plain.status(), 200);
    let plain_id = header(&plain, "x-request-id");
    let served_model = header(&plain, "x-model-router-model");
    let served_provider = header(&plain, "x-model-router-provider");
    let cost = header(&plain, "x-model-router-cost");
    let plain_body: Value = plain.json().await.unwrap();

    // A stream, through auto.
    let mut streamed = hello("auto");
    streamed["stream"] = json!(true);
    let stream = chat(&up, &key, streamed).await;
    assert_eq!(stream.status(), 200);
    let stream_id = header(&stream, "x-request-id");
    let _ = stream.text().await.unwrap();

    // Embeddings.
    let embedded = reqwest::Client::new()
        .post(format!("{}/v1/embeddings", up.url))
        .bearer_auth(&key)
        .json(&json!({"model": "embed-small", "input": "a sentence"}))
        .send()
        .await
        .unwrap();
    assert_eq!(embedded.status(), 200);
    let embed_id = header(&embedded, "x-request-id");

    // Two fallbacks: break the provider that served, then the next one.
    let faults = format!("{}/sim/_sim/faults", up.url);
    let mut broken = Vec::new();
    for _ in 0..2 {
        let r = chat(&up, &key, hello("standard")).await;
        assert_eq!(r.status(), 200);
        let provider = header(&r, "x-model-router-provider");
        broken.push(provider.clone());
        let set = admin
            .http
            .post(&faults)
            .bearer_auth(&admin.key)
            .json(&json!({"provider": provider, "status": 503}))
            .send()
            .await
            .unwrap();
        assert!(set.status().is_success());
    }
    let r = chat(&up, &key, hello("standard")).await;
    assert_eq!(r.status(), 200, "a third provider answers");
    let fallback_id = header(&r, "x-request-id");

    // A failure: the broken provider's model, pinned (no fallback).
    let failed = chat(&up, &key, hello(&served_model)).await;
    let failed_status = failed.status().as_u16();
    let failed_id = header(&failed, "x-request-id");
    let pinned_provider_broken = broken.contains(&served_provider);

    let ids = [&plain_id, &stream_id, &embed_id, &fallback_id, &failed_id];
    let spans = receiver
        .wait_for(Duration::from_secs(30), |s| {
            ids.iter().all(|id| has_trace(s, id))
        })
        .await;
    for id in ids {
        assert!(
            has_trace(&spans, id),
            "no trace for {id}: {} spans",
            spans.len()
        );
    }

    // The chat request: root + the serving attempt, GenAI attributes.
    let trace = trace_of(&spans, &plain_id);
    let root = assert_tree(&trace, &plain_id);
    assert_eq!(root.name, "chat standard");
    assert_eq!(root.attr("gen_ai.operation.name"), "chat");
    assert_eq!(root.attr("gen_ai.request.model"), "standard");
    assert_eq!(root.attr("gen_ai.response.model"), served_model);
    assert_eq!(root.attr("gen_ai.provider.name"), served_provider);
    assert_eq!(
        root.attr("gen_ai.usage.input_tokens"),
        plain_body["usage"]["prompt_tokens"].to_string()
    );
    assert_eq!(
        root.attr("gen_ai.usage.output_tokens"),
        plain_body["usage"]["completion_tokens"].to_string()
    );
    assert_eq!(root.attr("modelrouter.tier"), "standard");
    assert_eq!(root.attr("modelrouter.prefer"), "cheap");
    assert_eq!(root.attr("modelrouter.cost_usd"), cost);
    assert_eq!(root.attr("modelrouter.outcome"), "completed");
    assert_eq!(root.attr("modelrouter.free"), "false");
    assert!(!root.attr("modelrouter.account_id").is_empty());
    assert!(!root.attr("modelrouter.key_id").is_empty());
    assert_eq!(root.status, 0);
    assert_eq!(
        root.attr("gen_ai.response.finish_reasons"),
        plain_body["choices"][0]["finish_reason"].as_str().unwrap()
    );
    assert_eq!(trace.len(), 2, "{trace:#?}");
    assert_eq!(trace[1].attr("gen_ai.response.model"), served_model);
    assert!(!trace[1].attr("server.address").is_empty());
    assert_eq!(
        root.headers.get("x-tenant-token").map(String::as_str),
        Some("alpha-token")
    );
    assert_eq!(root.protocol, "http/protobuf");

    // The stream, through auto: its score and signals, time to first byte.
    let trace = trace_of(&spans, &stream_id);
    let root = assert_tree(&trace, &stream_id);
    assert_eq!(root.attr("gen_ai.request.model"), "auto");
    assert!(
        root.attr("modelrouter.auto.score").parse::<u8>().is_ok(),
        "{root:?}"
    );
    assert!(!root.attr("modelrouter.auto.tier").is_empty());
    assert!(
        !root.attr("modelrouter.time_to_first_byte_ms").is_empty(),
        "{root:?}"
    );

    // Embeddings.
    let trace = trace_of(&spans, &embed_id);
    let root = assert_tree(&trace, &embed_id);
    assert_eq!(root.attr("gen_ai.operation.name"), "embeddings");
    assert!(root.name.starts_with("embeddings "), "{}", root.name);

    // Two fallbacks: two failed attempts, then the one that served.
    let trace = trace_of(&spans, &fallback_id);
    let root = assert_tree(&trace, &fallback_id);
    assert!(
        trace.len() >= 4,
        "root, two failed attempts and the serving one: {trace:#?}"
    );
    let failed_attempts: Vec<&Span> = trace[1..trace.len() - 1].iter().collect();
    for attempt in &failed_attempts {
        assert_eq!(attempt.status, 2, "{attempt:?}");
        assert!(!attempt.attr("error.type").is_empty(), "{attempt:?}");
        assert!(
            broken.contains(&attempt.attr("gen_ai.provider.name").to_owned()),
            "{attempt:?}"
        );
    }
    let served = trace.last().unwrap();
    assert_eq!(served.status, 0);
    assert_eq!(
        served.attr("gen_ai.response.model"),
        root.attr("gen_ai.response.model")
    );
    assert_eq!(
        root.attr("modelrouter.attempts"),
        trace.len().saturating_sub(1).to_string()
    );
    let starts: Vec<u64> = trace[1..].iter().map(|s| s.start_ns).collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "attempts in order: {starts:?}"
    );

    // The failure: an error root, its attempts, no serving span.
    assert!(pinned_provider_broken);
    assert!(failed_status >= 500, "{failed_status}");
    let trace = trace_of(&spans, &failed_id);
    let root = assert_tree(&trace, &failed_id);
    assert_eq!(root.status, 2, "{root:?}");
    assert_eq!(root.attr("modelrouter.outcome"), "failed");
    assert!(!root.attr("error.type").is_empty());
    assert!(root.attr("gen_ai.response.model").is_empty());
    assert!(trace[1..].iter().all(|s| s.status == 2), "{trace:#?}");
}

/// A header value no id, timestamp or counter can contain (a hex value like
/// "bee" turns up inside UUIDs by chance).
const B_SECRET: &str = "secret-for-tenant-b-Qz";

#[tokio::test(flavor = "multi_thread")]
async fn tenants_spans_go_only_to_their_own_backends_and_a_stuck_one_delays_no_other() {
    let (receiver_a, receiver_b) = (Receiver::start().await, Receiver::start().await);
    let dir = temp_dir("telemetry-tenants");
    let up = up(BIN, &dir, &FAST).await;
    let key_a = up.printed_key.clone().expect("key");
    let admin = Admin::of(&up);
    admin
        .destination(
            json!({"name": "a", "endpoint": receiver_a.http_url(), "protocol": "http/json"}),
        )
        .await;

    let b = Browser::new(&up.url);
    b.sign_up("tenant-b@example.com", "Tenant B").await;
    let (status, _) = b
        .api(reqwest::Method::POST, "/api/v1/telemetry/destinations",
             Some(json!({"name": "b", "endpoint": receiver_b.grpc_url(), "protocol": "grpc", "headers": {"x-b": B_SECRET}})))
        .await;
    assert_eq!(status, 201);
    let key_b = b.create_key("b").await;
    let (_, session) = b.api(reqwest::Method::GET, "/api/v1/session", None).await;
    let account_b = session["account"].as_str().unwrap().to_owned();

    let mut ids_a = BTreeSet::new();
    let mut ids_b = BTreeSet::new();
    for i in 0..6 {
        let (key, ids) = if i % 2 == 0 {
            (&key_a, &mut ids_a)
        } else {
            (&key_b, &mut ids_b)
        };
        // Free models serve B, which has no credit.
        let r = chat(&up, key, hello("economy")).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        ids.insert(header(&r, "x-request-id"));
    }
    let a_spans = receiver_a
        .wait_for(Duration::from_secs(30), |s| {
            ids_a.iter().all(|id| has_trace(s, id))
        })
        .await;
    let b_spans = receiver_b
        .wait_for(Duration::from_secs(30), |s| {
            ids_b.iter().all(|id| has_trace(s, id))
        })
        .await;
    assert!(
        ids_a.iter().all(|id| has_trace(&a_spans, id)),
        "A got its traces"
    );
    assert!(
        ids_b.iter().all(|id| has_trace(&b_spans, id)),
        "B got its traces"
    );
    let seen = |spans: &[Span]| -> BTreeSet<String> {
        spans
            .iter()
            .map(|s| s.attr("modelrouter.request_id").to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    assert!(
        seen(&a_spans).is_disjoint(&ids_b),
        "A's backend got none of B's requests"
    );
    assert!(
        seen(&b_spans).is_disjoint(&ids_a),
        "B's backend got none of A's requests"
    );
    assert!(b_spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .all(|s| s.attr("modelrouter.account_id") == account_b));
    assert!(a_spans.iter().all(|s| s.protocol == "http/json"));
    assert!(b_spans.iter().all(
        |s| s.protocol == "grpc" && s.headers.get("x-b").map(String::as_str) == Some(B_SECRET)
    ));

    // A member of B is not an owner: destinations are owners' only.
    let (status, listed) = b
        .api(reqwest::Method::GET, "/api/v1/telemetry/destinations", None)
        .await;
    assert_eq!(status, 200);
    let listed = listed["destinations"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["header_names"], json!(["x-b"]));
    assert!(
        !listed[0].to_string().contains(B_SECRET),
        "header values are never shown again"
    );
    // The status follows the delivery (noted just after the backend answers).
    let mut status = Value::Null;
    let noted = test_support::eventually(Duration::from_secs(10), async || {
        let (_, listed) = b
            .api(reqwest::Method::GET, "/api/v1/telemetry/destinations", None)
            .await;
        status = listed["destinations"][0]["status"].clone();
        status["exported"].as_i64().unwrap_or(0) >= 3 && status["backlog"] == 0
    })
    .await;
    assert!(noted, "{status}");
    assert!(status["last_success_at"].is_string(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_destinations_are_refused_and_test_spans_report_what_the_backend_said() {
    let receiver = Receiver::start().await;
    let dir = temp_dir("telemetry-input");
    let up = up(BIN, &dir, &FAST).await;
    let admin = Admin::of(&up);
    let refused = [
        (json!({"name": "x", "endpoint": "not a url"}), "endpoint"),
        (
            json!({"name": "x", "endpoint": "ftp://collector/v1/traces"}),
            "endpoint",
        ),
        (
            json!({"name": "x", "endpoint": "http://c/v1/traces", "headers": {"bad header": "v"}}),
            "headers",
        ),
        (
            json!({"name": "x", "endpoint": "http://c/v1/traces", "headers": {"x-a": "new\nline"}}),
            "headers",
        ),
        (
            json!({"name": "x", "endpoint": "http://c/v1/traces", "protocol": "thrift"}),
            "protocol",
        ),
        (
            json!({"name": "x", "endpoint": "http://c/v1/traces", "sampling": "ratio", "ratio": 2}),
            "ratio",
        ),
        (json!({"name": "x", "preset": "honeycomb"}), "token"),
        (
            json!({"name": "x", "preset": "grafana", "token": "t", "region": "prod-us-east-0"}),
            "instance",
        ),
    ];
    for (body, param) in refused {
        let (status, error) = admin
            .call(
                reqwest::Method::POST,
                "/api/v1/telemetry/destinations",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
        assert_eq!(error["error"]["code"], "invalid_request");
        assert!(error["error"]["message"].as_str().unwrap().len() > 10);
    }
    let (status, error) = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/telemetry/destinations",
            Some(json!({"nme": "typo"})),
        )
        .await;
    assert_eq!(status, 400, "{error}");

    // A preset fills in the vendor's endpoint and header names.
    let hc = admin
        .destination(
            json!({"name": "hc", "preset": "honeycomb", "token": "hc_live_key", "region": "eu"}),
        )
        .await;
    let (_, shown) = admin
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/telemetry/destinations/{hc}"),
            None,
        )
        .await;
    assert_eq!(shown["endpoint"], "https://api.eu1.honeycomb.io/v1/traces");
    assert_eq!(shown["header_names"], json!(["x-honeycomb-team"]));
    assert!(!shown.to_string().contains("hc_live_key"));

    // Test span to a live receiver: it arrives; to nothing: the error, fast.
    let live = admin
        .destination(json!({"name": "live", "endpoint": receiver.http_url()}))
        .await;
    let (status, result) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/telemetry/destinations/{live}/test"),
            None,
        )
        .await;
    assert_eq!((status, &result["ok"]), (200, &json!(true)), "{result}");
    let got = receiver
        .wait_for(Duration::from_secs(5), |s| {
            s.iter().any(|s| s.attr("modelrouter.test") == "true")
        })
        .await;
    assert!(got
        .iter()
        .any(|s| s.attr("modelrouter.destination_id") == live));

    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = admin
        .destination(
            json!({"name": "dead", "endpoint": format!("http://127.0.0.1:{dead_port}/v1/traces")}),
        )
        .await;
    let started = std::time::Instant::now();
    let (status, result) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/telemetry/destinations/{dead}/test"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        !result["error"].as_str().unwrap_or("").is_empty(),
        "{result}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the 10 s test timeout"
    );

    receiver.fail_with(Some(401));
    let (_, result) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/telemetry/destinations/{live}/test"),
            None,
        )
        .await;
    assert_eq!(result["ok"], false);
    assert!(
        result["error"].as_str().unwrap().contains("401"),
        "{result}"
    );

    // Deleted: gone from the list, and its id answers 404.
    let (status, _) = admin
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/telemetry/destinations/{dead}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = admin
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/telemetry/destinations/{dead}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

/// Sends `n` economy requests; their request ids.
async fn requests(up: &Up, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let r = chat(up, key, hello("economy")).await;
        assert_eq!(r.status(), 200);
        ids.push(header(&r, "x-request-id"));
    }
    ids
}

async fn metric(up: &Up, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", up.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_down_for_a_minute_gets_every_span_when_it_returns() {
    let outage = Duration::from_secs(60);
    let receiver = Receiver::start().await;
    let dir = temp_dir("telemetry-outage");
    let up = up(BIN, &dir, &FAST).await;
    let key = up.printed_key.clone().expect("key");
    let admin = Admin::of(&up);
    let id = admin
        .destination(json!({"name": "flaky", "endpoint": receiver.http_url()}))
        .await;

    // Half the outage answering 503, half refusing connections.
    receiver.fail_with(Some(503));
    let started = tokio::time::Instant::now();
    let mut ids = requests(&up, &key, 10).await;
    tokio::time::sleep_until(started + outage / 2).await;
    receiver.go_away().await;
    ids.extend(requests(&up, &key, 10).await);
    let (_, during) = admin
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/telemetry/destinations/{id}"),
            None,
        )
        .await;
    assert!(
        during["status"]["backlog"].as_i64().unwrap() >= 10,
        "{during}"
    );
    assert!(during["status"]["last_error"].is_string(), "{during}");
    assert!(metric(&up, "modelrouter_exporter_backlog_requests").await >= 10.0);
    tokio::time::sleep_until(started + outage).await;
    assert!(receiver.spans().is_empty(), "nothing accepted while down");

    receiver.fail_with(None);
    receiver.come_back().await;
    let spans = receiver
        .wait_for(Duration::from_secs(30), |s| {
            ids.iter().all(|id| has_trace(s, id))
        })
        .await;
    let missing: Vec<&String> = ids.iter().filter(|id| !has_trace(&spans, id)).collect();
    assert!(missing.is_empty(), "lost after the outage: {missing:?}");
    // The backlog empties as each delivery is noted (just after it lands).
    let mut after = Value::Null;
    let drained = test_support::eventually(Duration::from_secs(10), async || {
        after = admin
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/telemetry/destinations/{id}"),
                None,
            )
            .await
            .1;
        after["status"]["backlog"] == 0
    })
    .await;
    assert!(drained, "{after}");
    assert!(after["status"]["last_success_at"].is_string());
    assert!(metric(&up, "modelrouter_exporter_retries_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exporter_killed_mid_export_loses_nothing_and_repeats_at_most_a_batch() {
    let receiver = Receiver::start().await;
    let dir = temp_dir("telemetry-kill");
    let mut first = up(BIN, &dir, &FAST).await;
    let key = first.printed_key.clone().expect("key");
    let admin = Admin::of(&first);
    admin
        .destination(json!({"name": "slow", "endpoint": receiver.http_url()}))
        .await;
    // Every export hangs unanswered: the kill lands while one is in flight.
    receiver.hang(true);
    let ids = requests(&first, &key, 30).await;
    let in_flight =
        test_support::eventually(Duration::from_secs(10), async || receiver.requests() >= 1).await;
    assert!(in_flight, "an export started");
    // The kill must not find the log records unacked (read again, they
    // would hide a loss): wait until every event was read, then a moment.
    let read = test_support::eventually(Duration::from_secs(10), async || {
        metric(&first, "modelrouter_exporter_events_read_total").await >= 30.0
    })
    .await;
    assert!(read, "the exporter read every event");
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill9(&mut first.child).await;

    receiver.hang(false);
    let again = up(BIN, &dir, &FAST).await;
    let spans = receiver
        .wait_for(Duration::from_secs(30), |s| {
            ids.iter().all(|id| has_trace(s, id))
        })
        .await;
    let missing: Vec<&String> = ids.iter().filter(|id| !has_trace(&spans, id)).collect();
    assert!(missing.is_empty(), "lost across kill -9: {missing:?}");
    let mut roots: BTreeMap<String, usize> = BTreeMap::new();
    for s in spans.iter().filter(|s| s.parent_span_id.is_empty()) {
        *roots.entry(s.trace_id.clone()).or_default() += 1;
    }
    // The hung export never reached the backend, and the restarted gateway's
    // journal replays its events into the log again: neither may show up as
    // a second copy (at least once allows one batch twice only when the
    // backend took it and the exporter died before noting so).
    let repeated = roots.values().filter(|&&n| n > 1).count();
    assert_eq!(repeated, 0, "requests sent twice");
    drop(again);
}

#[tokio::test(flavor = "multi_thread")]
async fn text_goes_only_to_the_destination_that_opted_in_and_the_books_stay_clean() {
    let (capturing, metadata_only) = (Receiver::start().await, Receiver::start().await);
    let dir = temp_dir("telemetry-content");
    let mut up = up(BIN, &dir, &FAST).await;
    let key = up.printed_key.clone().expect("key");
    let admin = Admin::of(&up);
    admin
        .destination(
            json!({"name": "with text", "endpoint": capturing.http_url(), "capture_content": true}),
        )
        .await;
    admin
        .destination(json!({"name": "metadata", "endpoint": metadata_only.http_url()}))
        .await;
    let (_, listed) = admin
        .call(reqwest::Method::GET, "/api/v1/telemetry/destinations", None)
        .await;
    let flags: Vec<bool> = listed["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["capture_content"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, [true, false]);

    // The gateway learns of the opt-in through the policies bucket: send
    // until a request's text arrives (bounded).
    let words = "the purple elephant recites a sonnet";
    let mut ids = Vec::new();
    let mut found = None;
    for _ in 0..50 {
        let mut body = json!({"model": "economy", "messages": [
            {"role": "system", "content": "Answer in one line."},
            {"role": "user", "content": words}]});
        if ids.len() % 2 == 1 {
            body["stream"] = json!(true);
        }
        let r = chat(&up, &key, body).await;
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-request-id");
        let _ = r.text().await;
        ids.push(id.clone());
        let spans = capturing
            .wait_for(Duration::from_secs(2), |s| has_trace(s, &id))
            .await;
        let root = trace_of(&spans, &id).into_iter().next();
        if let Some(root) = root.filter(|r| !r.attr("gen_ai.input.messages").is_empty()) {
            found = Some(root);
            if ids.len() >= 2 {
                break;
            }
        }
    }
    let root = found.expect("a captured request's text arrived");
    let input: Value = serde_json::from_str(root.attr("gen_ai.input.messages")).unwrap();
    assert_eq!(input[0]["role"], "system");
    assert_eq!(input[1]["role"], "user");
    assert_eq!(input[1]["parts"][0]["content"], words);
    let output: Value = serde_json::from_str(root.attr("gen_ai.output.messages")).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert!(
        !output[0]["parts"][0]["content"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{output}"
    );

    let others = metadata_only
        .wait_for(Duration::from_secs(10), |s| {
            ids.iter().all(|id| has_trace(s, id))
        })
        .await;
    assert!(
        ids.iter().all(|id| has_trace(&others, id)),
        "the other destination got every request"
    );
    for span in &others {
        assert!(
            span.attr("gen_ai.input.messages").is_empty()
                && span.attr("gen_ai.output.messages").is_empty()
        );
        assert!(
            !format!("{span:?}").contains("purple elephant"),
            "no text to the destination that did not opt in"
        );
    }

    // The text events travel the usage journal: the books still reconcile.
    test_support::deployment::terminate(&mut up.child).await;
    let output = tokio::process::Command::new(BIN)
        .arg("reconcile")
        .env("MODELROUTER_DATA_DIR", &dir)
        .env_remove("MODELROUTER_CONFIG")
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && report.contains("the ledger matches the event log"),
        "{report}"
    );
}
