//! Reading `text/event-stream` bodies: the `sse-stream` crate parses them to
//! the WHATWG rules (`\n`, `\r\n` or a bare `\r` ends a line; multi-line
//! data joined by `\n`; comments and unknown fields ignored). Here blocks
//! with no data or only empty data are skipped (nothing in them translates
//! to a chunk), and its errors become provider errors.

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

/// The events of an SSE body, ending as the body does: a transport error
/// (a timeout, a broken body, [`ProviderError::EndOfBody`]) comes through
/// as itself; a field that is not UTF-8 is a protocol error.
pub fn events<B: Buf>(
    body: impl Stream<Item = Result<B, ProviderError>>,
) -> impl Stream<Item = Result<Event, ProviderError>> {
    SseByteStream::new(body).filter_map(|item| {
        future::ready(match item {
            Ok(sse) => sse.data.filter(|data| !data.is_empty()).map(|data| {
                Ok(Event {
                    event: sse.event,
                    data,
                })
            }),
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
