//! Exact money for Model Router.
//!
//! Every amount is an integer number of nano-dollars (1 USD = 10^9 nano-dollars).
//! Floats never touch money: prices are parsed from decimal strings, costs are
//! computed in `i128` and rounded once per request, and amounts are printed back
//! as exact decimal strings.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nano-dollars in one US dollar.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Why a decimal amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not a plain decimal number such as `2.50`.
    #[error(
        "`{0}` is not a decimal amount (expected digits with an optional `.` and up to 9 decimals)"
    )]
    Malformed(String),
    /// More than nine decimals: a nano-dollar is the smallest unit.
    #[error("`{0}` has more than 9 decimals; the smallest unit is one nano-dollar")]
    TooPrecise(String),
    /// The amount does not fit in 64 bits of nano-dollars (about 9.2 billion USD).
    #[error("`{0}` is too large")]
    Overflow(String),
    /// An amount in cents with a fraction of a cent.
    #[error("`{0}` has a fraction of a cent; use at most two decimals")]
    FractionOfCent(String),
}

/// An amount of US dollars, stored as whole nano-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    /// Zero dollars.
    pub const ZERO: Money = Money(0);

    /// An amount of `nanos` nano-dollars.
    pub const fn from_nanos(nanos: i64) -> Self {
        Money(nanos)
    }

    /// The amount in nano-dollars.
    pub const fn nanos(self) -> i64 {
        self.0
    }
}

/// Nano-dollars in one cent.
pub const NANOS_PER_CENT: i64 = NANOS_PER_USD / 100;

/// An amount in whole US cents: what card payments move (Stripe's unit for
/// USD). Deposits and their fee are decided in cents, then booked as
/// [`Money`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub i64);

impl Cents {
    /// The same amount in nano-dollars.
    pub const fn money(self) -> Money {
        Money(self.0 * NANOS_PER_CENT)
    }

    /// Reads `12.34`, `$12.34`, `5` or `5.5` (at most two decimals).
    pub fn parse_usd(text: &str) -> Result<Cents, MoneyError> {
        let trimmed = text.trim().trim_start_matches('$').trim();
        let money: Money = trimmed.parse()?;
        if money.0 % NANOS_PER_CENT != 0 {
            return Err(MoneyError::FractionOfCent(trimmed.to_owned()));
        }
        Ok(Cents(money.0 / NANOS_PER_CENT))
    }
}

impl fmt::Display for Cents {
    /// As dollars with two decimals: `12.34`, `-0.40`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Money {
    /// The amount in whole cents, if it is one.
    pub const fn cents(self) -> Option<Cents> {
        if self.0 % NANOS_PER_CENT == 0 {
            Some(Cents(self.0 / NANOS_PER_CENT))
        } else {
            None
        }
    }
}

impl Money {
    /// For people: at least two decimals (`10.00`, `9.9995`, `-0.40`),
    /// exact beyond them.
    pub fn usd(self) -> String {
        let exact = self.to_string();
        match exact.split_once('.') {
            None => format!("{exact}.00"),
            Some((_, frac)) if frac.len() == 1 => format!("{exact}0"),
            Some(_) => exact,
        }
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Parses a USD decimal string (`"2"`, `"0.075"`, `"-1.5"`) exactly.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || MoneyError::Malformed(text.to_owned());
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || digits.ends_with('.') {
            return Err(malformed());
        }
        if frac.len() > 9 {
            return Err(MoneyError::TooPrecise(text.to_owned()));
        }
        let overflow = || MoneyError::Overflow(text.to_owned());
        let whole: i64 = whole.parse().map_err(|_| overflow())?;
        let frac_nanos: i64 = if frac.is_empty() {
            0
        } else {
            let scale = 10_i64.pow(9 - frac.len() as u32);
            frac.parse::<i64>().map_err(|_| malformed())? * scale
        };
        let nanos = whole
            .checked_mul(NANOS_PER_USD)
            .and_then(|n| n.checked_add(frac_nanos))
            .ok_or_else(overflow)?;
        Ok(Money(if negative { -nanos } else { nanos }))
    }
}

impl fmt::Display for Money {
    /// Exact USD decimal without trailing zeros: `0`, `0.000001234`, `12.5`.
    /// Written right to left into a buffer and handed over once: on every
    /// response's cost header and usage event, formatting piece by piece
    /// cost several times the digits themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sign, 10 whole digits (i64::MAX nanos), point, 9 decimals.
        let mut buf = [0u8; 24];
        let mut at = buf.len();
        let mut push = |byte: u8| {
            at -= 1;
            buf[at] = byte;
        };
        let abs = self.0.unsigned_abs();
        let (mut whole, mut frac) = (abs / NANOS_PER_USD as u64, abs % NANOS_PER_USD as u64);
        if frac != 0 {
            let mut decimals = 9;
            while frac % 10 == 0 {
                frac /= 10;
                decimals -= 1;
            }
            for _ in 0..decimals {
                push(b'0' + (frac % 10) as u8);
                frac /= 10;
            }
            push(b'.');
        }
        loop {
            push(b'0' + (whole % 10) as u8);
            whole /= 10;
            if whole == 0 {
                break;
            }
        }
        if self.0 < 0 {
            push(b'-');
        }
        f.write_str(std::str::from_utf8(&buf[at..]).unwrap_or("0"))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A list price: dollars per one million tokens, as providers publish them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PricePerMTok(pub Money);

/// Accumulates `tokens × price` terms and rounds once, up, to a whole nano-dollar.
///
/// Rounding per term would drift over many small charges; summing the exact
/// products (in units of 10^-6 nano-dollar) and rounding once cannot.
#[derive(Debug, Default, Clone, Copy)]
pub struct CostBuilder {
    micro_nanos: i128,
}

impl CostBuilder {
    /// Adds `tokens` charged at `price`.
    pub fn add(mut self, tokens: u64, price: PricePerMTok) -> Self {
        self.micro_nanos += i128::from(tokens) * i128::from(price.0.nanos());
        self
    }

    /// The total, rounded up to the next nano-dollar (saturating at the 64-bit range).
    pub fn total(self) -> Money {
        let nanos = (self.micro_nanos + 999_999).div_euclid(1_000_000);
        Money(i64::try_from(nanos).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod usd_tests {
    use super::*;

    #[test]
    fn usd_shows_cents_and_keeps_precision() {
        let usd = |s: &str| s.parse::<Money>().unwrap().usd();
        assert_eq!(usd("10"), "10.00");
        assert_eq!(usd("0.4"), "0.40");
        assert_eq!(usd("-0.4"), "-0.40");
        assert_eq!(usd("9.9995"), "9.9995");
        assert_eq!(usd("0"), "0.00");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cents_parse_print_and_convert_exactly() {
        use super::{Cents, Money};
        assert_eq!(Cents::parse_usd("12.34"), Ok(Cents(1234)));
        assert_eq!(Cents::parse_usd(" $5 "), Ok(Cents(500)));
        assert_eq!(Cents::parse_usd("5.5"), Ok(Cents(550)));
        assert!(Cents::parse_usd("5.555").is_err());
        assert!(Cents::parse_usd("five").is_err());
        assert_eq!(Cents(40).to_string(), "0.40");
        assert_eq!(Cents(-1234).to_string(), "-12.34");
        assert_eq!(Cents(1234).money().to_string(), "12.34");
        assert_eq!("0.4".parse::<Money>().unwrap().cents(), Some(Cents(40)));
        assert_eq!("0.001".parse::<Money>().unwrap().cents(), None);
    }

    use super::*;

    fn usd(s: &str) -> Money {
        s.parse().expect("valid amount")
    }

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!(usd("2.50").nanos(), 2_500_000_000);
        assert_eq!(usd("0.075").nanos(), 75_000_000);
        assert_eq!(usd("0.000000001").nanos(), 1);
        assert_eq!(usd("-1.5").nanos(), -1_500_000_000);
        assert_eq!(usd("0").to_string(), "0");
        assert_eq!(Money::from_nanos(1_234).to_string(), "0.000001234");
        assert_eq!(Money::from_nanos(12_500_000_000).to_string(), "12.5");
        assert_eq!(Money::from_nanos(-5).to_string(), "-0.000000005");
    }

    /// The digits written right to left are the ones the formatting
    /// machinery wrote piece by piece before, at the edges and in between.
    #[test]
    fn display_matches_piecewise_formatting() {
        fn piecewise(nanos: i64) -> String {
            let sign = if nanos < 0 { "-" } else { "" };
            let abs = nanos.unsigned_abs();
            let (whole, frac) = (abs / 1_000_000_000, abs % 1_000_000_000);
            if frac == 0 {
                return format!("{sign}{whole}");
            }
            let digits = format!("{frac:09}");
            format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![
            0,
            1,
            -1,
            10,
            999_999_999,
            1_000_000_000,
            -1_000_000_001,
            i64::MAX,
            i64::MIN,
        ];
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push(state as i64 >> (state % 64));
        }
        for nanos in values {
            assert_eq!(
                Money::from_nanos(nanos).to_string(),
                piecewise(nanos),
                "{nanos}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for bad in ["", ".5", "1.", "1e3", "abc", "1.2.3", "--1", " 1"] {
            assert!(
                matches!(bad.parse::<Money>(), Err(MoneyError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "0.0000000001".parse::<Money>(),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            "99999999999".parse::<Money>(),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn serde_round_trips_as_decimal_string() {
        let m = usd("3.141592653");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"3.141592653\"");
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
    }

    #[test]
    fn cost_is_exact_and_rounded_once_upwards() {
        // 1,000 input tokens at $2.00/M and 500 output tokens at $8.00/M = $0.006.
        let cost = CostBuilder::default()
            .add(1_000, PricePerMTok(usd("2.00")))
            .add(500, PricePerMTok(usd("8.00")))
            .total();
        assert_eq!(cost, usd("0.006"));
        // One token at $0.0375/M is 37.5 nano-dollars: rounds up to 38.
        let tiny = CostBuilder::default()
            .add(1, PricePerMTok(usd("0.0375")))
            .total();
        assert_eq!(tiny.nanos(), 38);
        // Three fractional terms summed before rounding: 3 × 0.4 = 1.2 → 2, not 3.
        let sum = CostBuilder::default()
            .add(1, PricePerMTok(usd("0.0004")))
            .add(1, PricePerMTok(usd("0.0004")))
            .add(1, PricePerMTok(usd("0.0004")))
            .total();
        assert_eq!(sum.nanos(), 2);
    }

    #[test]
    fn per_request_rounding_costs_under_one_nano_each_over_a_million_charges() {
        // A million requests of 7 tokens at $0.00015/M: each costs exactly 1.05 nanos and is
        // billed 2; integer arithmetic keeps both totals exact, with no float drift, and the
        // gap is below one nano-dollar per request by construction.
        let price = PricePerMTok(usd("0.00015"));
        let mut billed = Money::ZERO;
        let mut exact = CostBuilder::default();
        for _ in 0..1_000_000 {
            billed += CostBuilder::default().add(7, price).total();
            exact = exact.add(7, price);
        }
        assert_eq!(billed.nanos(), 2_000_000);
        assert_eq!(exact.total().nanos(), 1_050_000);
    }
}
