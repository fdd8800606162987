//! Streaming SSE frames with the simulator's timing and faults.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures_util::stream::{self, StreamExt};

/// Sends `frames` (whole SSE events) `delay` apart; with `cut_after`, drops
/// the connection after that many, as a failing upstream would.
pub(crate) fn respond(frames: Vec<String>, delay: Duration, cut_after: Option<u32>) -> Response {
    let body = stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
        if cut_after.is_some_and(|n| i >= n as usize) {
            // Let what was sent reach the wire before the connection drops, as it would upstream.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(std::io::Error::other("simulated stream cut"));
        }
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(Bytes::from(frame))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
