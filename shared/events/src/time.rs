//! Event times on the wire: RFC 3339 in UTC with the fraction trimmed to 0,
//! 3, 6 or 9 digits, exactly as chrono writes them, but without chrono's
//! general-purpose formatter: every served request writes one.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Appends `at`, quoted, as [`serialize`] writes it.
pub fn write_quoted(at: &DateTime<Utc>, out: &mut Vec<u8>) {
    let mut buf = [0u8; 30];
    out.push(b'"');
    match write(at, &mut buf) {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        None => out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes()),
    }
    out.push(b'"');
}

/// Serializes `at` as chrono would (`SecondsFormat::AutoSi`, `Z`).
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write(at, &mut buf) {
        Some(text) => serializer.serialize_str(text),
        None => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// The text of `at` in `buf`; `None` for years outside 1970–9999 and leap
/// seconds (chrono formats those).
fn write<'a>(at: &DateTime<Utc>, buf: &'a mut [u8; 30]) -> Option<&'a str> {
    let nanos = at.timestamp_subsec_nanos();
    let secs = u64::try_from(at.timestamp()).ok()?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    let (year, month, day) = civil_from_days(secs / 86_400);
    if year > 9999 {
        return None;
    }
    let of_day = (secs % 86_400) as u32;
    put(buf, 0, year, 4);
    buf[4] = b'-';
    put(buf, 5, month, 2);
    buf[7] = b'-';
    put(buf, 8, day, 2);
    buf[10] = b'T';
    put(buf, 11, of_day / 3600, 2);
    buf[13] = b':';
    put(buf, 14, of_day / 60 % 60, 2);
    buf[16] = b':';
    put(buf, 17, of_day % 60, 2);
    let (fraction, digits) = match nanos {
        0 => (0, 0),
        _ if nanos.is_multiple_of(1_000_000) => (nanos / 1_000_000, 3),
        _ if nanos.is_multiple_of(1_000) => (nanos / 1_000, 6),
        _ => (nanos, 9),
    };
    let mut n = 19;
    if digits > 0 {
        buf[n] = b'.';
        put(buf, n + 1, fraction, digits);
        n += 1 + digits;
    }
    buf[n] = b'Z';
    std::str::from_utf8(&buf[..n + 1]).ok()
}

/// The Gregorian (year, month, day) of `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + u64::from(month <= 2)) as u32;
    (year, month, day)
}

/// Writes `value` as `digits` decimal digits (zero-padded) at `at`.
fn put(buf: &mut [u8; 30], at: usize, mut value: u32, digits: usize) {
    for i in (at..at + digits).rev() {
        buf[i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    #[test]
    fn writes_what_chrono_writes() {
        let base = Utc.with_ymd_and_hms(2026, 11, 26, 9, 5, 7).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..10_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let nanos = match i % 4 {
                0 => 0,
                1 => (seed % 1_000) as u32 * 1_000_000,
                2 => (seed % 1_000_000) as u32 * 1_000,
                _ => (seed % 1_000_000_000) as u32,
            };
            let at = base
                + chrono::Duration::seconds((seed % 3_000_000_000) as i64 - 1_500_000_000)
                + chrono::Duration::nanoseconds(i64::from(nanos));
            let at = at.with_nanosecond(nanos).unwrap();
            let mut buf = [0u8; 30];
            assert_eq!(
                write(&at, &mut buf),
                Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_str())
            );
        }
        let far = Utc.with_ymd_and_hms(12026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(write(&far, &mut [0u8; 30]), None);
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2100, 3, 1), (9999, 12, 31)] {
            let at = Utc.with_ymd_and_hms(y, m, d, 23, 59, 59).unwrap();
            let mut buf = [0u8; 30];
            assert_eq!(
                write(&at, &mut buf),
                Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_str())
            );
        }
    }
}
