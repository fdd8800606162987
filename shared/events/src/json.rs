//! A small JSON writer for the one event written on every served request
//! (`usage_recorded`): field names are pre-escaped literals and values go
//! straight into the buffer, which costs about half of serde_json's
//! general path. The golden files and a round-trip test keep it identical
//! to the serde form.

use money::Money;
use uuid::Uuid;

/// Whether any byte of `bytes` is a control character, `"` or `\\`;
/// eight bytes at a time (the SWAR "has zero byte" test).
fn needs_escape(bytes: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(LOW) & !w & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // A byte below 0x20 (in a byte without its high bit), '"' or '\\'.
        let control = w.wrapping_sub(LOW * 0x20) & !w & HIGH != 0;
        if control || has_zero(w ^ (LOW * b'"' as u64)) || has_zero(w ^ (LOW * b'\\' as u64)) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends JSON values to a buffer.
pub struct JsonWriter<'a>(pub &'a mut Vec<u8>);

impl JsonWriter<'_> {
    /// Raw bytes: punctuation and pre-escaped keys (`"name":`).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A string, escaped as serde_json escapes it.
    pub fn str(&mut self, s: &str) -> &mut Self {
        if !needs_escape(s.as_bytes()) {
            self.0.push(b'"');
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(b'"');
        } else if serde_json::to_writer(&mut *self.0, s).is_err() {
            // Writing a string into a Vec cannot fail.
            self.0.extend_from_slice(b"\"\"");
        }
        self
    }

    /// An unsigned integer.
    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }

    /// A signed integer.
    pub fn i64(&mut self, n: i64) -> &mut Self {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }

    /// `true` or `false`.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.raw(if b { b"true" } else { b"false" })
    }

    /// A UUID, hyphenated and lower-case, quoted.
    pub fn uuid(&mut self, id: Uuid) -> &mut Self {
        let mut buf = [0u8; 36];
        self.0.push(b'"');
        self.0
            .extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
        self.0.push(b'"');
        self
    }

    /// Money as its exact decimal string, as `Money`'s `Display` writes it.
    pub fn money(&mut self, m: Money) -> &mut Self {
        let nanos = m.nanos();
        self.0.push(b'"');
        if nanos < 0 {
            self.0.push(b'-');
        }
        let abs = nanos.unsigned_abs();
        self.u64(abs / 1_000_000_000);
        let frac = abs % 1_000_000_000;
        if frac != 0 {
            let mut digits = [b'0'; 10];
            digits[0] = b'.';
            let mut rest = frac;
            for d in digits[1..].iter_mut().rev() {
                *d = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            let len = 10 - digits.iter().rev().take_while(|&&d| d == b'0').count();
            self.0.extend_from_slice(&digits[..len]);
        }
        self.0.push(b'"');
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_detected_in_every_position() {
        for len in 0..20 {
            let plain = "a".repeat(len);
            assert!(!needs_escape(plain.as_bytes()), "{len}");
            assert!(!needs_escape("ünïcødé ✓ ~ \u{7f}".as_bytes()));
            for at in 0..len {
                for special in [b'"', b'\\', b'\n', 0u8, 0x1f] {
                    let mut bytes = plain.clone().into_bytes();
                    bytes[at] = special;
                    assert!(needs_escape(&bytes), "{len} {at} {special}");
                }
                let mut bytes = plain.clone().into_bytes();
                bytes[at] = 0x20;
                assert!(!needs_escape(&bytes));
            }
        }
    }

    #[test]
    fn money_is_written_as_display_writes_it() {
        for nanos in [
            0,
            1,
            -1,
            10,
            1_000_000_000,
            -2_500_000_000,
            123_456_789_012,
            i64::MAX,
            i64::MIN + 1,
        ] {
            let m = Money::from_nanos(nanos);
            let mut out = Vec::new();
            JsonWriter(&mut out).money(m);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{m}\""));
        }
    }
}
