//! The HTTP server every Model Router service runs: hyper's HTTP/1.1
//! connections with the limits a public endpoint needs against slow and
//! idle clients, and a graceful stop that lets requests in flight finish.
//!
//! - A request's headers must arrive within `header_read_timeout_ms` of the
//!   connection being ready for them; this is also how long an idle
//!   keep-alive connection is kept.
//! - Its body must arrive whole within `body_read_timeout_ms` of the headers;
//!   reading it after that fails (the gateway answers 408).
//!
//! Each request sees the peer's address as `ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::CONNECTION;
use axum::http::HeaderValue;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tower_service::Service;
use tracing::Instrument;

use crate::probes::{Flag, Probes};

/// Limits on how clients may send requests (`[server]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Time for a request's headers to arrive, and the longest a keep-alive
    /// connection may sit idle (default 10 s).
    pub header_read_timeout_ms: u64,
    /// Time for a request's whole body to arrive after its headers (default 60 s).
    pub body_read_timeout_ms: u64,
    /// How long a stop waits for requests in flight (default 30 s).
    pub shutdown_grace_ms: u64,
    /// After SIGTERM, how long the service keeps accepting connections while
    /// `/readyz` answers 503 and every response closes its connection, so a
    /// load balancer takes it out of rotation before it stops listening
    /// (default 0; set it to the balancer's probe interval or more).
    pub drain_delay_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            shutdown_grace_ms: 30_000,
            drain_delay_ms: 0,
        }
    }
}

/// Why reading a request body stopped early.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// Serves `app` and the `probes` on `listener` until `shutdown` completes;
/// then drains: `/readyz` answers 503 and responses close their connections
/// for `drain_delay_ms` while connections are still accepted, then the
/// listener closes and the requests in flight get up to the grace to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    probes: Probes,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .keep_alive(true);
    let draining = probes.draining();
    let server = Server {
        http,
        app,
        probes: probes.router(),
        body_timeout: Duration::from_millis(config.body_read_timeout_ms),
        graceful: hyper_util::server::graceful::GracefulShutdown::new(),
        draining: draining.clone(),
    };
    server.accept_until(&listener, shutdown).await;
    draining.set();
    let delay = Duration::from_millis(config.drain_delay_ms);
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "draining: not ready, closing connections after each response"
        );
        server
            .accept_until(&listener, tokio::time::sleep(delay))
            .await;
    }
    server.accept_pending(listener);
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    if tokio::time::timeout(grace, server.graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("stopping with connections still open after {grace:?}");
    }
    Ok(())
}

/// What every accepted connection is served with.
struct Server {
    http: hyper::server::conn::http1::Builder,
    app: Router,
    /// Served beside `app` rather than merged into it, so `app`'s own
    /// fallback and layers stay exactly as they are.
    probes: Router,
    body_timeout: Duration,
    graceful: hyper_util::server::graceful::GracefulShutdown,
    draining: Flag,
}

impl Server {
    /// Accepts and serves connections until `stop` completes.
    async fn accept_until(&self, listener: &TcpListener, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut stop => return,
            };
            self.spawn(stream, peer);
        }
    }

    /// Serves the connections the kernel has already completed but not yet
    /// handed over, then closes the listener: closing it with them queued
    /// would reset them after their clients had sent a request.
    fn accept_pending(&self, listener: TcpListener) {
        let listener = match listener.into_std() {
            Ok(listener) => listener,
            Err(e) => return tracing::debug!("closing the listener: {e}"),
        };
        while let Ok((stream, peer)) = listener.accept() {
            let stream = stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream));
            match stream {
                Ok(stream) => self.spawn(stream, peer),
                Err(e) => tracing::debug!(%peer, "a queued connection: {e}"),
            }
        }
    }

    fn spawn(&self, stream: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        // Responses are written whole; Nagle's algorithm would only delay the last segment.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let (app, probes) = (self.app.clone(), self.probes.clone());
        let (body_timeout, draining) = (self.body_timeout, self.draining.clone());
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut router = match request.uri().path() {
                "/livez" | "/readyz" => probes.clone(),
                _ => app.clone(),
            };
            let mut request = request.map(|body| Body::new(Deadline::new(body, body_timeout)));
            request.extensions_mut().insert(ConnectInfo(peer));
            // Every request gets the gateway's own id here (a client's own is
            // replaced: usage events and `GET /v1/requests/{id}` rely on ids
            // being unique), and its handling runs in a span carrying it, so
            // every log line of the request names it. The span covers the
            // handler and the provider work, not each frame of a streamed
            // body: entering it per frame cost 4% of a stream's instructions.
            let id = crate::new_request_id();
            let span = tracing::error_span!("request", id = %id);
            if let Ok(value) = HeaderValue::from_str(&id) {
                request
                    .headers_mut()
                    .insert(crate::headers::REQUEST_ID, value);
            }
            // Read as the request arrives (a request begun before the drain
            // keeps its connection; the next one on it is told to close).
            let closing = draining.is_set();
            async move {
                let mut response = router.call(request).instrument(span).await?;
                if closing {
                    // The client's next request opens a new connection, which
                    // the balancer sends to a replica that is not stopping.
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(stream), service);
        let connection = self.graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// A request body that must be read whole before a deadline.
struct Deadline {
    body: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl Deadline {
    fn new(body: Incoming, limit: Duration) -> Deadline {
        Deadline {
            body,
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether a body-read error (as axum reports it) was [`BodyTimedOut`].
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        source = e.source();
    }
    false
}
