//! Event times on the wire: RFC 3339 in UTC with the fraction trimmed to 0,
//! 3, 6 or 9 digits, exactly as chrono writes them, but without chrono's
//! general-purpose formatter: every served request writes one, and the
//! ledger reads it back ([`parse`]) without chrono's general parser.

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

/// `at` as chrono's `to_rfc3339` writes it (fraction trimmed, `+00:00`):
/// the text the ledger's rows keep, once per folded event.
pub fn to_rfc3339(at: &DateTime<Utc>) -> String {
    let mut buf = [0u8; 30];
    match write(at, &mut buf) {
        Some(text) => {
            let mut out = String::with_capacity(text.len() + 5);
            out.push_str(&text[..text.len() - 1]);
            out.push_str("+00:00");
            out
        }
        None => at.to_rfc3339(),
    }
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

/// Reads an event time as chrono's `DateTime<Utc>` deserializer does (any
/// RFC 3339 offset, read relaxed), the form [`write`] produces directly:
/// a tenth of chrono's cost for the time every usage event carries.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    ours(text.as_bytes()).or_else(|| {
        text.parse::<DateTime<chrono::FixedOffset>>()
            .ok()
            .map(|at| at.with_timezone(&Utc))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z` from 1970 on, no leap
/// second; `None` for anything else, which chrono then reads.
fn ours(b: &[u8]) -> Option<DateTime<Utc>> {
    let digits = |from: usize, n: usize| -> Option<u32> {
        b.get(from..from + n)?.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || separators.iter().any(|(at, c)| b[*at] != *c) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let nanos = match b.len() - 20 {
        0 => 0,
        n @ (4 | 7 | 10) if b[19] == b'.' => digits(20, n - 1)? * 10u32.pow(10 - n as u32),
        _ => return None,
    };
    let in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// Days since 1970-01-01 of a Gregorian date from 1970 on (Howard
/// Hinnant's `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = u64::from(year) - u64::from(month <= 2);
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = u64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    /// 10,000 times within ±47 years of 2026, drawn from `seed`, a quarter
    /// each with no fraction, milli-, micro- and nanoseconds.
    fn random_times(mut seed: u64) -> Vec<DateTime<Utc>> {
        let base = Utc.with_ymd_and_hms(2026, 11, 26, 9, 5, 7).unwrap();
        (0..10_000u32)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let nanos = match i % 4 {
                    0 => 0,
                    1 => (seed % 1_000) as u32 * 1_000_000,
                    2 => (seed % 1_000_000) as u32 * 1_000,
                    _ => (seed % 1_000_000_000) as u32,
                };
                (base + chrono::Duration::seconds((seed % 3_000_000_000) as i64 - 1_500_000_000))
                    .with_nanosecond(nanos)
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn writes_what_chrono_writes() {
        for at in random_times(0x9e37_79b9_7f4a_7c15) {
            let mut buf = [0u8; 30];
            assert_eq!(
                write(&at, &mut buf),
                Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_str())
            );
        }
        let far = Utc.with_ymd_and_hms(12026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(write(&far, &mut [0u8; 30]), None);
        assert_eq!(to_rfc3339(&far), far.to_rfc3339());
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2100, 3, 1), (9999, 12, 31)] {
            let at = Utc.with_ymd_and_hms(y, m, d, 23, 59, 59).unwrap();
            let mut buf = [0u8; 30];
            assert_eq!(
                write(&at, &mut buf),
                Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_str())
            );
        }
    }

    /// The ledger's column text is chrono's `to_rfc3339`, byte for byte.
    #[test]
    fn column_text_is_what_chrono_writes() {
        for at in random_times(0x2545_f491_4f6c_dd1d) {
            assert_eq!(to_rfc3339(&at), at.to_rfc3339());
        }
        let before = Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(to_rfc3339(&before), before.to_rfc3339());
    }

    /// Every time `write` produces reads back as itself and as chrono reads
    /// it; every other text, valid or not, reads exactly as chrono reads it.
    #[test]
    fn reads_what_chrono_reads() {
        let chrono = |t: &str| {
            t.parse::<DateTime<chrono::FixedOffset>>()
                .ok()
                .map(|at| at.with_timezone(&Utc))
        };
        for at in random_times(0x2545_f491_4f6c_dd1d) {
            let mut buf = [0u8; 30];
            let text = write(&at, &mut buf).unwrap().to_owned();
            assert_eq!(ours(text.as_bytes()), Some(at), "{text}");
            assert_eq!(parse(&text), chrono(&text), "{text}");
        }
        for text in [
            "2024-02-29T23:59:59Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2000-02-29T00:00:00.5Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-12-00T00:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T23:60:00Z",
            "2026-12-07T23:59:60Z",
            "2026-12-07T12:00:00.12Z",
            "2026-12-07T12:00:00.1234Z",
            "2026-12-07T12:00:00.123456789012Z",
            "2026-12-07T12:00:00+02:00",
            "2026-12-07T12:00:00.250-05:30",
            "2026-12-07 12:00:00Z",
            "2026-12-07t12:00:00z",
            "1969-12-31T23:59:59Z",
            "2026-12-07T12:00:00",
            "2026-12-07T12:0a:00Z",
            "+2026-12-07T12:00:00Z",
            "",
            "Z",
        ] {
            assert_eq!(parse(text), chrono(text), "{text:?}");
        }
    }
}
