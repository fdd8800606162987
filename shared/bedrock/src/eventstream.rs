//! The AWS event-stream framing of `converse-stream`, on top of the
//! maintained `aws-smithy-eventstream` crate: each frame has a prelude
//! (lengths and their CRC32), headers, a payload and a CRC32 of the whole
//! message. A frame whose checksums do not match is an error, never output.
//!
//! Bedrock's frames carry `:message-type` `event` (with `:event-type`, e.g.
//! `contentBlockDelta`) or `exception` (with `:exception-type`, e.g.
//! `throttlingException`), and a JSON payload.

use aws_smithy_eventstream::frame::{write_message_to, DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// A decoded Bedrock frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An event: its type and JSON payload.
    Event { kind: String, payload: Bytes },
    /// An exception ending the stream: its type and JSON payload (`{"message"}`).
    Exception { kind: String, payload: Bytes },
}

fn encode(headers: [(&'static str, String); 3], payload: &[u8]) -> Bytes {
    let message = headers.into_iter().fold(
        Message::new(Bytes::copy_from_slice(payload)),
        |message, (name, value)| {
            message.add_header(Header::new(name, HeaderValue::String(value.into())))
        },
    );
    let mut out = Vec::new();
    // Writing to a Vec only fails on oversized headers, which these are not.
    let _ = write_message_to(&message, &mut out);
    Bytes::from(out)
}

/// An event frame.
pub fn event(kind: &str, payload: &[u8]) -> Bytes {
    encode(
        [
            (":event-type", kind.to_owned()),
            (":content-type", "application/json".to_owned()),
            (":message-type", "event".to_owned()),
        ],
        payload,
    )
}

/// An exception frame.
pub fn exception(kind: &str, payload: &[u8]) -> Bytes {
    encode(
        [
            (":exception-type", kind.to_owned()),
            (":content-type", "application/json".to_owned()),
            (":message-type", "exception".to_owned()),
        ],
        payload,
    )
}

/// Decodes frames from bytes as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: BytesMut,
    frames: MessageFrameDecoder,
}

impl Decoder {
    /// Appends bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered; a corrupt frame is an error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let message = match self.frames.decode_frame(&mut self.buffer) {
            Ok(DecodedFrame::Complete(message)) => message,
            Ok(DecodedFrame::Incomplete) => return Ok(None),
            Err(e) => return Err(format!("corrupt event-stream frame: {e}")),
        };
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        let payload = message.payload().clone();
        match header(":message-type").as_deref() {
            Some("event") => Ok(Some(Frame::Event {
                kind: header(":event-type").unwrap_or_default(),
                payload,
            })),
            Some("exception") => Ok(Some(Frame::Exception {
                kind: header(":exception-type").unwrap_or_default(),
                payload,
            })),
            other => Err(format!("event-stream frame of unknown type {other:?}")),
        }
    }

    /// Bytes received but not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buffer.remaining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_any_split_and_corruption_is_caught() {
        let mut wire = event("messageStart", br#"{"role":"assistant"}"#).to_vec();
        wire.extend_from_slice(&exception(
            "throttlingException",
            br#"{"message":"slow down"}"#,
        ));
        for split in 1..wire.len() {
            let mut decoder = Decoder::default();
            let mut frames = Vec::new();
            for part in wire.chunks(split) {
                decoder.push(part);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(
                frames,
                [
                    Frame::Event {
                        kind: "messageStart".into(),
                        payload: Bytes::from_static(br#"{"role":"assistant"}"#)
                    },
                    Frame::Exception {
                        kind: "throttlingException".into(),
                        payload: Bytes::from_static(br#"{"message":"slow down"}"#)
                    }
                ],
                "split {split}"
            );
            assert_eq!(decoder.pending(), 0);
        }
        for flipped in [5, 9, 30, wire.len() / 2 - 2] {
            let mut bad = wire.clone();
            bad[flipped] ^= 0x20;
            let mut decoder = Decoder::default();
            decoder.push(&bad);
            let outcome: Result<Vec<Frame>, String> =
                std::iter::from_fn(|| decoder.next_frame().transpose()).collect();
            assert!(outcome.is_err(), "byte {flipped} flipped");
        }
    }
}
