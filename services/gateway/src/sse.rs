//! Incremental decoding of `text/event-stream` bodies into `data` payloads.

/// Buffers bytes and yields the `data` of each complete event.
#[derive(Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no event separator, so a large
    /// event arriving in many reads is scanned once, not once per read.
    scanned: usize,
}

impl SseDecoder {
    /// Appends bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event's data (multi-line data joined by `\n`), if one is buffered.
    /// Events without data (comments, keep-alives) are skipped.
    pub fn next_data(&mut self) -> Option<String> {
        loop {
            // A separator may straddle the previous read: back up by its length - 1.
            let from = self.scanned.saturating_sub(3);
            let Some((end, sep)) = find_event_end(&self.buffer[from..]).map(|(e, n)| (from + e, n))
            else {
                self.scanned = self.buffer.len();
                return None;
            };
            self.scanned = 0;
            let event: Vec<u8> = self.buffer.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&event[..end]);
            let mut data: Option<String> = None;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if let Some(value) = line.strip_prefix("data:") {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    }
                }
            }
            if data.is_some() {
                return data;
            }
        }
    }
}

/// The end of the first event and the length of its blank-line separator.
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    (0..buffer.len()).find_map(|i| {
        let rest = &buffer[i..];
        if rest.starts_with(b"\n\n") {
            Some((i, 2))
        } else if rest.starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_arbitrary_byte_boundaries() {
        let input = b": keep-alive\n\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\nevent: ping\n\ndata: [DONE]\n\n";
        for split in 1..input.len() {
            let mut decoder = SseDecoder::default();
            let mut out = Vec::new();
            for part in input.chunks(split) {
                decoder.push(part);
                while let Some(data) = decoder.next_data() {
                    out.push(data);
                }
            }
            assert_eq!(out, ["{\"a\":1}", "x\ny", "[DONE]"], "split {split}");
        }
    }
}
