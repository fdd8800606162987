//! Card payments for credit deposits. What a deposit costs ([`deposit`]:
//! credits plus the 4% fee, in cents), how Stripe's webhooks are
//! authenticated ([`signature`]) and read ([`webhook`]), and the Stripe API
//! calls the control plane and the ledger make ([`stripe`]).

pub mod deposit;
pub mod signature;
pub mod stripe;
pub mod webhook;

pub use deposit::{Deposit, DepositError, Limits};

/// A caller's input as a message repeats it: at most 200 characters.
fn echo(input: &str) -> String {
    events::cap(input, 200)
}
