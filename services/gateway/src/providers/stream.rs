//! One driver for every adapter's stream: the provider's frames in (SSE
//! events, Bedrock event-stream frames), OpenAI chunks out. An adapter says
//! only how one frame translates and how its dialect ends; the driver reads,
//! stops at the final frame and ends the stream at the first error.

use futures_util::stream::{self, Stream, StreamExt};
use openai::ChatCompletionChunk;

use super::{ChunkStream, ProviderError};

/// A provider's stream dialect, translated one frame at a time.
pub trait StreamTranslation: Send + 'static {
    /// One decoded unit of the provider's stream.
    type Frame: Send;

    /// The chunk `frame` becomes, if any; an error frame is an error.
    fn on(&mut self, frame: Self::Frame) -> Result<Option<ChatCompletionChunk>, ProviderError>;

    /// Whether the dialect's final frame was seen: nothing more is read.
    fn done(&self) -> bool;

    /// The body ended cleanly before [`StreamTranslation::done`]: the last
    /// chunk for a dialect whose end is not marked (Gemini), an
    /// interruption for the others.
    fn at_end(&mut self) -> Result<Option<ChatCompletionChunk>, ProviderError> {
        Err(ProviderError::EndOfBody)
    }
}

/// The chunks `frames` translate to under `translation`.
pub fn drive<T, F>(frames: F, translation: T) -> ChunkStream
where
    T: StreamTranslation,
    F: Stream<Item = Result<T::Frame, ProviderError>> + Send + 'static,
{
    let state = (frames.boxed(), translation, false);
    stream::unfold(state, |(mut frames, mut translation, stopped)| async move {
        if stopped || translation.done() {
            return None;
        }
        loop {
            let item = match frames.next().await {
                Some(Ok(frame)) => translation.on(frame),
                Some(Err(ProviderError::EndOfBody)) | None => match translation.at_end() {
                    Ok(Some(last)) => return Some((Ok(last), (frames, translation, true))),
                    Ok(None) => return None,
                    Err(e) => Err(e),
                },
                Some(Err(e)) => Err(e),
            };
            match item {
                Ok(Some(chunk)) => return Some((Ok(chunk), (frames, translation, false))),
                Ok(None) if translation.done() => return None,
                Ok(None) => continue,
                Err(e) => return Some((Err(e), (frames, translation, true))),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    /// Frames are numbers; 0 ends the dialect; a negative one is an error
    /// frame; odd numbers become chunks.
    struct Numbers {
        done: bool,
        unmarked_end: bool,
    }

    impl StreamTranslation for Numbers {
        type Frame = i32;
        fn on(&mut self, n: i32) -> Result<Option<ChatCompletionChunk>, ProviderError> {
            match n {
                0 => {
                    self.done = true;
                    Ok(None)
                }
                n if n < 0 => Err(ProviderError::Interrupted(format!("frame {n}"))),
                n if n % 2 == 1 => Ok(Some(chunk(&n.to_string()))),
                _ => Ok(None),
            }
        }
        fn done(&self) -> bool {
            self.done
        }
        fn at_end(&mut self) -> Result<Option<ChatCompletionChunk>, ProviderError> {
            if self.unmarked_end {
                Ok(Some(chunk("end")))
            } else {
                Err(ProviderError::EndOfBody)
            }
        }
    }

    fn chunk(id: &str) -> ChatCompletionChunk {
        serde_json::from_value(serde_json::json!({
            "id": id, "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": []
        }))
        .expect("a chunk")
    }

    fn run(frames: Vec<Result<i32, ProviderError>>, unmarked_end: bool) -> Vec<String> {
        let translation = Numbers {
            done: false,
            unmarked_end,
        };
        let mut chunks = drive(stream::iter(frames), translation);
        let mut out = Vec::new();
        while let Some(Some(item)) = chunks.next().now_or_never() {
            out.push(match item {
                Ok(chunk) => chunk.id,
                Err(e) => format!("error: {e}"),
            });
        }
        out
    }

    #[test]
    fn reads_until_the_final_frame_and_no_further() {
        let got = run(vec![Ok(1), Ok(2), Ok(3), Ok(0), Ok(5)], false);
        assert_eq!(got, ["1", "3"]);
    }

    #[test]
    fn a_body_that_ends_early_is_an_interruption_unless_the_dialect_has_no_end_mark() {
        let frames = || vec![Ok(1), Err(ProviderError::EndOfBody)];
        assert_eq!(
            run(frames(), false),
            [
                "1",
                "error: stream interrupted: the stream ended before its final event"
            ]
        );
        assert_eq!(run(frames(), true), ["1", "end"]);
    }

    #[test]
    fn the_first_error_ends_the_stream() {
        let got = run(vec![Ok(1), Ok(-7), Ok(3)], false);
        assert_eq!(got, ["1", "error: stream interrupted: frame -7"]);
        let got = run(
            vec![Ok(1), Err(ProviderError::Connect("reset".into())), Ok(3)],
            false,
        );
        assert_eq!(got, ["1", "error: connect error: reset"]);
    }
}
