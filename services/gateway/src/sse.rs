//! Reading `text/event-stream` bodies: the `sse-stream` crate parses them to
//! the WHATWG rules (`\n`, `\r\n` or a bare `\r` ends a line; multi-line
//! data joined by `\n`; comments and unknown fields ignored). Here blocks
//! with no data or only empty data are skipped (nothing in them translates
//! to a chunk), and its errors become provider errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Buf;
use futures_util::{future, Stream, StreamExt};
use sse_stream::{Error, SseByteStream};

use crate::providers::ProviderError;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its `event:` name; `None` is the default type, "message".
    pub event: Option<String>,
    /// Its data lines, joined by `\n`.
    pub data: String,
}

/// The most an SSE body may send without completing a block: a body that
/// sends more is refused rather than buffered (an upstream that streams
/// something other than SSE, or never ends a line).
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// The events of an SSE body, ending as the body does: a transport error
/// (a timeout, a broken body, [`ProviderError::EndOfBody`]) comes through
/// as itself; a field that is not UTF-8, or a block over
/// [`MAX_EVENT_BYTES`], is a protocol error.
pub fn events<B: Buf>(
    body: impl Stream<Item = Result<B, ProviderError>>,
) -> impl Stream<Item = Result<Event, ProviderError>> {
    events_within(body, MAX_EVENT_BYTES)
}

fn events_within<B: Buf>(
    body: impl Stream<Item = Result<B, ProviderError>>,
    limit: usize,
) -> impl Stream<Item = Result<Event, ProviderError>> {
    // Bytes read since the last complete block: what the parser may hold.
    let unparsed = Arc::new(AtomicUsize::new(0));
    let read = Arc::clone(&unparsed);
    let body = body.map(move |bytes| {
        let bytes = bytes?;
        let held = read.fetch_add(bytes.remaining(), Ordering::Relaxed) + bytes.remaining();
        if held > limit {
            return Err(ProviderError::Protocol(format!(
                "the event stream sent {held} bytes without ending an event (at most {limit})"
            )));
        }
        Ok(bytes)
    });
    SseByteStream::new(body).filter_map(move |item| {
        future::ready(match item {
            Ok(sse) => {
                unparsed.store(0, Ordering::Relaxed);
                sse.data.filter(|data| !data.is_empty()).map(|data| {
                    Ok(Event {
                        event: sse.event,
                        data,
                    })
                })
            }
            Err(e) => Some(Err(provider_error(e))),
        })
    })
}

fn provider_error(e: Error) -> ProviderError {
    match e {
        Error::Body(e) => match e.downcast::<ProviderError>() {
            Ok(e) => *e,
            Err(e) => ProviderError::Protocol(format!("the event stream broke: {e}")),
        },
        Error::Utf8Parse(e) => {
            ProviderError::Protocol(format!("the event stream is not UTF-8: {e}"))
        }
        e => ProviderError::Protocol(format!("the event stream is not SSE: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{stream, FutureExt};

    use super::*;

    fn decode(reads: Vec<&[u8]>) -> Vec<(String, String)> {
        let body = stream::iter(reads.into_iter().map(Ok::<_, ProviderError>));
        let mut events = Box::pin(events(body));
        let mut out = Vec::new();
        while let Some(Some(Ok(event))) = events.next().now_or_never() {
            out.push((event.event.unwrap_or_else(|| "message".into()), event.data));
        }
        out
    }

    #[test]
    fn splits_events_across_arbitrary_byte_boundaries_and_every_line_ending() {
        let input: &[u8] = b": keep-alive\n\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\nevent: ping\n\nevent: delta\rdata: z\r\rretry: 5\nunknown: field\nid: 7\ndata: q\n\ndata:\n\ndata: [DONE]\n\n";
        for split in 1..input.len() {
            let got = decode(input.chunks(split).collect());
            let want = [
                ("message", "{\"a\":1}"),
                ("message", "x\ny"),
                ("delta", "z"),
                ("message", "q"),
                ("message", "[DONE]"),
            ];
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(e, d)| (e.to_string(), d.to_string()))
                .collect();
            assert_eq!(got, want, "split {split}");
        }
    }

    #[test]
    fn a_field_that_is_not_utf8_is_a_protocol_error() {
        let body = stream::iter(vec![Ok::<_, ProviderError>(&b"data: \xff\n\n"[..])]);
        let mut events = Box::pin(events(body));
        let first = events.next().now_or_never().flatten();
        assert!(
            matches!(first, Some(Err(ProviderError::Protocol(_)))),
            "{first:?}"
        );
    }

    #[test]
    fn a_body_that_never_ends_an_event_is_refused_past_the_limit() {
        let line = [b'x'; 1000];
        let mut reads: Vec<&[u8]> = vec![b"data: small\n\ndata: "];
        reads.extend(std::iter::repeat_n(&line[..], 20));
        let body = stream::iter(reads.into_iter().map(Ok::<_, ProviderError>));
        let mut events = Box::pin(events_within(body, 10_000));
        let first = events.next().now_or_never().flatten();
        assert!(matches!(first, Some(Ok(e)) if e.data == "small"));
        let second = events.next().now_or_never().flatten();
        assert!(
            matches!(&second, Some(Err(ProviderError::Protocol(m))) if m.contains("without ending an event")),
            "{second:?}"
        );
        assert!(events.next().now_or_never().flatten().is_none());
        // Many small events in the same bytes are never refused.
        let many = b"data: y\n\n".repeat(5_000);
        let body = stream::iter(
            many.chunks(1000)
                .map(Ok::<_, ProviderError>)
                .collect::<Vec<_>>(),
        );
        let mut events = Box::pin(events_within(body, 10_000));
        let mut n = 0;
        while let Some(Some(item)) = events.next().now_or_never() {
            assert!(item.is_ok(), "{item:?}");
            n += 1;
        }
        assert_eq!(n, 5_000);
    }

    #[test]
    fn a_transport_error_comes_through_as_itself() {
        let body = stream::iter(vec![
            Ok(&b"data: one\n\n"[..]),
            Err(ProviderError::EndOfBody),
        ]);
        let mut events = Box::pin(events(body));
        let first = events.next().now_or_never().flatten();
        assert!(matches!(first, Some(Ok(e)) if e.data == "one"));
        let second = events.next().now_or_never().flatten();
        assert!(matches!(second, Some(Err(ProviderError::EndOfBody))));
    }
}
