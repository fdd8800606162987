//! Incremental decoding of `text/event-stream` bodies into `data` payloads.

/// Buffers bytes and yields the `data` of each complete event.
#[derive(Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
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
            let (end, sep) = find_event_end(&self.buffer)?;
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
    for i in 0..buffer.len() {
        if buffer[i..].starts_with(b"\n\n") {
            return Some((i, 2));
        }
        if buffer[i..].starts_with(b"\r\n\r\n") {
            return Some((i, 4));
        }
    }
    None
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
