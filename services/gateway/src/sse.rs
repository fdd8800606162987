//! Reading `text/event-stream` bodies: the `eventsource-stream` crate parses
//! them to the WHATWG rules (`\n`, `\r\n` or a bare `\r` ends a line;
//! multi-line data joined by `\n`; comments and data-less events skipped;
//! `event:` and `id:` kept), and its errors become provider errors here.

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};

use crate::providers::ProviderError;

pub use eventsource_stream::Event;

/// The events of an SSE body, ending as the body does: a transport error
/// (a timeout, a broken body, [`ProviderError::EndOfBody`]) comes through
/// as itself; bytes that are not UTF-8 or not SSE are a protocol error.
pub fn events<B: AsRef<[u8]>>(
    body: impl Stream<Item = Result<B, ProviderError>>,
) -> impl Stream<Item = Result<Event, ProviderError>> {
    body.eventsource().map(|item| {
        item.map_err(|e| match e {
            EventStreamError::Transport(e) => e,
            EventStreamError::Utf8(e) => {
                ProviderError::Protocol(format!("the event stream is not UTF-8: {e}"))
            }
            EventStreamError::Parser(e) => {
                ProviderError::Protocol(format!("the event stream is not SSE: {e:?}"))
            }
        })
    })
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
            out.push((event.event, event.data));
        }
        out
    }

    #[test]
    fn splits_events_across_arbitrary_byte_boundaries_and_every_line_ending() {
        let input: &[u8] = b": keep-alive\n\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\nevent: ping\n\nevent: delta\rdata: z\r\rdata: [DONE]\n\n";
        for split in 1..input.len() {
            let got = decode(input.chunks(split).collect());
            let want = [
                ("message", "{\"a\":1}"),
                ("message", "x\ny"),
                ("delta", "z"),
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
