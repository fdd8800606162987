//! A real OTLP trace receiver for tests, built from the official protobuf
//! definitions (`opentelemetry-proto`): OTLP/HTTP (protobuf and JSON) on
//! `POST /v1/traces`, and OTLP/gRPC (`TraceService/Export`) on a port of
//! its own. It keeps every span it accepts, with the request's headers, and
//! can be told to answer errors or to go away and come back on its port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One received span, flattened for assertions.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Attribute → value as text (arrays joined with `,`).
    pub attributes: BTreeMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// The resource's `service.name`.
    pub service: String,
    /// `http/protobuf`, `http/json` or `grpc`.
    pub protocol: &'static str,
    /// The request's headers (gRPC: metadata), lowercase names.
    pub headers: BTreeMap<String, String>,
}

impl Span {
    /// An attribute's value, or "" when absent.
    pub fn attr(&self, name: &str) -> &str {
        self.attributes.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<Span>>,
    /// Answer this status instead of accepting (HTTP; gRPC: UNAVAILABLE).
    failing: Mutex<Option<u16>>,
    /// Never answer an HTTP export (and keep nothing of it).
    hanging: std::sync::atomic::AtomicBool,
    requests: std::sync::atomic::AtomicU64,
}

/// A running receiver.
pub struct Receiver {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    http_task: Mutex<Option<JoinHandle<()>>>,
    grpc_task: JoinHandle<()>,
}

impl Receiver {
    /// A receiver on two free ports of 127.0.0.1.
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http_addr = http.local_addr().expect("addr");
        let http_task = serve_http(http, Arc::clone(&shared));
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let grpc_addr = grpc.local_addr().expect("addr");
        let service = TraceServiceServer::new(Grpc(Arc::clone(&shared)));
        let grpc_task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Receiver {
            shared,
            http_addr,
            grpc_addr,
            http_task: Mutex::new(Some(http_task)),
            grpc_task,
        }
    }

    /// The OTLP/HTTP traces URL.
    pub fn http_url(&self) -> String {
        format!("http://{}/v1/traces", self.http_addr)
    }

    /// The OTLP/gRPC endpoint.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.shared.spans.lock().expect("lock").clone()
    }

    /// Export requests answered (accepted or not).
    pub fn requests(&self) -> u64 {
        self.shared
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers `status` to every HTTP export from now on (`None`: accept).
    pub fn fail_with(&self, status: Option<u16>) {
        *self.shared.failing.lock().expect("lock") = status;
    }

    /// Makes every HTTP export hang unanswered, keeping nothing of it, as
    /// a backend that never got the request (`false`: answer again).
    pub fn hang(&self, on: bool) {
        self.shared
            .hanging
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops listening on the HTTP port: connections are refused.
    pub async fn go_away(&self) {
        let task = self.http_task.lock().expect("lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same HTTP port again.
    pub async fn come_back(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.http_addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing_free_sleep(e).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.http_addr),
            }
        };
        *self.http_task.lock().expect("lock") =
            Some(serve_http(listener, Arc::clone(&self.shared)));
    }

    /// Waits (up to `limit`) until `done` holds for the spans received.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let spans = self.spans();
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn tracing_free_sleep(_: std::io::Error) {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(mut task) = self.http_task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
        self.grpc_task.abort();
    }
}

fn serve_http(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    let app = Router::new()
        .route("/v1/traces", post(http_export))
        .with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn http_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if shared.hanging.load(std::sync::atomic::Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    if let Some(status) = *shared.failing.lock().expect("lock") {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, "receiver told to fail").into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (request, protocol) = if content_type.starts_with("application/json") {
        match serde_json::from_slice::<ExportTraceServiceRequest>(&body) {
            Ok(r) => (r, "http/json"),
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("bad OTLP JSON: {e}")).into_response()
            }
        }
    } else if content_type.starts_with("application/x-protobuf") {
        match ExportTraceServiceRequest::decode(body) {
            Ok(r) => (r, "http/protobuf"),
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("bad OTLP protobuf: {e}")).into_response()
            }
        }
    } else {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content-type").into_response();
    };
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    keep(&shared, request, protocol, headers);
    let reply = ExportTraceServiceResponse::default();
    if protocol == "http/json" {
        (
            [("content-type", "application/json")],
            serde_json::to_vec(&reply).unwrap_or_default(),
        )
            .into_response()
    } else {
        (
            [("content-type", "application/x-protobuf")],
            reply.encode_to_vec(),
        )
            .into_response()
    }
}

struct Grpc(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.0.failing.lock().expect("lock").is_some() {
            return Err(tonic::Status::unavailable("receiver told to fail"));
        }
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        keep(&self.0, request.into_inner(), "grpc", headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn keep(
    shared: &Shared,
    request: ExportTraceServiceRequest,
    protocol: &'static str,
    headers: BTreeMap<String, String>,
) {
    let mut out = shared.spans.lock().expect("lock");
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(text)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for s in scope.spans {
                out.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(a)))
                        .collect(),
                    status: s.status.map(|st| st.code).unwrap_or(0),
                    service: service.clone(),
                    protocol,
                    headers: headers.clone(),
                });
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(kv: &KeyValue) -> String {
    fn one(v: &AnyValue) -> String {
        match v {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::BoolValue(b) => b.to_string(),
            AnyValue::IntValue(i) => i.to_string(),
            AnyValue::DoubleValue(d) => d.to_string(),
            AnyValue::ArrayValue(a) => a
                .values
                .iter()
                .filter_map(|v| v.value.as_ref().map(one))
                .collect::<Vec<_>>()
                .join(","),
            other => format!("{other:?}"),
        }
    }
    kv.value
        .as_ref()
        .and_then(|v| v.value.as_ref())
        .map(one)
        .unwrap_or_default()
}
