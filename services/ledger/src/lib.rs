//! The ledger: folds usage and billing events from the event log into a
//! double-entry journal, per-account balances and per-UTC-day spend (see
//! [`postings`] for the chart of accounts and its invariants), publishes
//! each account's state for the gateways, and can prove its books by
//! replaying the log ([`reconcile`]).

pub mod export;
pub mod gaps;
mod gather;
pub mod lag;
pub mod memory;
pub mod payments;
pub mod postings;
pub mod projection;
pub mod recharge;
pub mod reconcile;
pub mod sequences;
pub mod service;
pub mod settlement;

pub use service::Ledger;

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Log(#[from] eventlog::LogError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Data(String),
}
