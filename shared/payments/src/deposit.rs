//! What a deposit costs: the credits asked for plus the deposit fee (4%),
//! both in whole cents. The fee is 4% of the credits rounded half-up to the
//! cent: `fee = (credits × 4 + 50) div 100` in integer cents, so $12.34 pays
//! $0.49 (0.4936) and $10.13 pays $0.41 (0.4052). The balance grows by the
//! credits only; the fee is the platform's revenue.

use money::Cents;

/// The fee, in percent of the credits.
pub const FEE_PERCENT: i64 = 4;

/// The smallest and largest deposit, in cents of credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min: Cents,
    pub max: Cents,
}

impl Default for Limits {
    /// $5 to $10,000.
    fn default() -> Self {
        Limits {
            min: Cents(500),
            max: Cents(1_000_000),
        }
    }
}

/// A deposit of `credits`: its fee and what the card is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deposit {
    pub credits: Cents,
    pub fee: Cents,
}

/// Why an amount cannot be deposited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepositError {
    #[error("`{0}` is not an amount in USD, like 10 or 12.50.")]
    NotAnAmount(String),
    #[error("The smallest deposit is ${0}.")]
    BelowMinimum(Cents),
    #[error("The largest deposit is ${0}.")]
    AboveMaximum(Cents),
}

impl Deposit {
    /// The deposit of `credits` with its fee.
    pub fn of(credits: Cents) -> Deposit {
        Deposit {
            credits,
            fee: fee(credits),
        }
    }

    /// Reads a typed amount (`12.34`, `$10`) and checks it against `limits`.
    pub fn parse(text: &str, limits: Limits) -> Result<Deposit, DepositError> {
        let credits = Cents::parse_usd(text)
            .map_err(|_| DepositError::NotAnAmount(crate::echo(text.trim())))?;
        if credits < limits.min {
            return Err(DepositError::BelowMinimum(limits.min));
        }
        if credits > limits.max {
            return Err(DepositError::AboveMaximum(limits.max));
        }
        Ok(Deposit::of(credits))
    }

    /// What the card is charged: credits + fee.
    pub fn total(&self) -> Cents {
        Cents(self.credits.0 + self.fee.0)
    }
}

/// 4% of `credits`, rounded half-up to the cent.
pub fn fee(credits: Cents) -> Cents {
    Cents((credits.0 * FEE_PERCENT + 50).div_euclid(100))
}

/// The credits part of `paid` cents of a deposit charged `total` for
/// `credits`: what a partial refund or a dispute of `paid` takes back from
/// the balance (the rest is fee). Rounded half-up, and computed on running
/// totals by callers so the parts of several partial refunds add up to the
/// part of their sum.
pub fn credits_share(paid: Cents, credits: Cents, total: Cents) -> Cents {
    if total.0 <= 0 {
        return Cents(0);
    }
    let scaled = i128::from(paid.0) * i128::from(credits.0) * 2 + i128::from(total.0);
    Cents((scaled.div_euclid(2 * i128::from(total.0))) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_four_percent_rounded_half_up_to_the_cent() {
        for (credits, fee, total) in [
            ("5", "0.20", "5.20"),
            ("10", "0.40", "10.40"),
            ("12.34", "0.49", "12.83"),
            ("10.12", "0.40", "10.52"),
            ("10.13", "0.41", "10.54"),
            ("12.50", "0.50", "13.00"),
            ("99.99", "4.00", "103.99"),
            ("100", "4.00", "104.00"),
            ("999.99", "40.00", "1039.99"),
            ("1234.56", "49.38", "1283.94"),
            ("10000", "400.00", "10400.00"),
        ] {
            let deposit = Deposit::parse(credits, Limits::default()).unwrap();
            assert_eq!(
                (deposit.fee.to_string(), deposit.total().to_string()),
                (fee.to_owned(), total.to_owned()),
                "{credits}"
            );
        }
    }

    #[test]
    fn amounts_out_of_range_or_not_amounts_are_refused() {
        let limits = Limits::default();
        assert_eq!(
            Deposit::parse("4.99", limits),
            Err(DepositError::BelowMinimum(Cents(500)))
        );
        assert_eq!(
            Deposit::parse("10000.01", limits),
            Err(DepositError::AboveMaximum(Cents(1_000_000)))
        );
        for bad in ["", "ten", "1e3", "12.345", "-5", "NaN"] {
            assert!(Deposit::parse(bad, limits).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn partial_refunds_split_like_the_whole() {
        let deposit = Deposit::parse("12.34", Limits::default()).unwrap();
        let total = deposit.total();
        assert_eq!(
            credits_share(total, deposit.credits, total),
            deposit.credits
        );
        // Refunded in three steps, on running totals: the parts add up.
        let steps = [Cents(100), Cents(500), Cents(total.0)];
        let mut before = Cents(0);
        let mut sum = 0;
        for step in steps {
            let after = credits_share(step, deposit.credits, total);
            sum += after.0 - credits_share(before, deposit.credits, total).0;
            before = step;
        }
        assert_eq!(sum, deposit.credits.0);
    }
}
