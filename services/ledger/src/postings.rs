//! What one event does to the books: a pure function from an event to its
//! journal lines and projection changes, shared by the live ledger (which
//! writes them to the store) and by reconciliation (which replays the log
//! into memory and compares).
//!
//! The chart of accounts (`book`s), in nano-dollars:
//!
//! | book | kind | moves when |
//! |---|---|---|
//! | `cash` | asset | a deposit is paid: credits + fee (debit); refunded or disputed away (credit) |
//! | `customer_credits` (per account) | liability | credits are granted or deposited (credit); usage spends them, refunds and disputes take them back (debit) |
//! | `fee_revenue` | revenue | the 4% deposit fee (credit); its share of a refund or dispute (debit) |
//! | `grants` | expense | credits given without payment (demo credits) |
//! | `provider_payable` | liability | usage billed at provider rates, owed to providers |
//!
//! Invariants: every event's lines debit and credit the same total; an
//! account's balance is the credits minus the debits of its
//! `customer_credits` lines; free usage has no lines (its cost is zero).
//!
//! The store writes every event's lines as rows but usage's: a usage
//! event's two lines say what its request row says (account, time, cost,
//! request id, model, provider), so the `journal` view reads them from it.

use chrono::NaiveDate;
use events::{AccountId, Envelope, Event, Outcome};
use money::Money;

/// A ledger book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Book {
    Cash,
    CustomerCredits,
    FeeRevenue,
    Grants,
    ProviderPayable,
}

impl Book {
    /// The name stored in the journal.
    pub const fn as_str(self) -> &'static str {
        match self {
            Book::Cash => "cash",
            Book::CustomerCredits => "customer_credits",
            Book::FeeRevenue => "fee_revenue",
            Book::Grants => "grants",
            Book::ProviderPayable => "provider_payable",
        }
    }
}

/// One journal line: a debit or a credit to a book (for `customer_credits`,
/// the account's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub book: Book,
    pub account: AccountId,
    pub debit: Money,
    pub credit: Money,
    pub memo: String,
}

/// A request, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub request_id: String,
    /// The id of the API key that made it.
    pub key: String,
    pub model: String,
    pub provider: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: Money,
    pub total_ms: u64,
    pub outcome: &'static str,
    /// `chat` or `embeddings`.
    pub kind: &'static str,
    /// The tier asked for or chosen (`""` for a pinned model).
    pub tier: String,
    /// `auto`'s score, when it decided.
    pub auto_score: Option<u8>,
    /// Candidates tried or skipped, the one that answered included.
    pub attempts: u32,
    pub first_byte_ms: Option<u64>,
    /// The OpenAI `user` field (`""` when absent).
    pub user: String,
    pub tags: Vec<String>,
}

/// Everything one event changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    pub account: AccountId,
    /// The UTC day the event happened.
    pub day: NaiveDate,
    pub lines: Vec<Line>,
    /// Spend on `day` (usage a provider answered).
    pub spend: Option<Money>,
    /// A new daily limit (`Some(None)` lifts it).
    pub limit: Option<Option<Money>>,
    /// A display name (account opened).
    pub name: Option<String>,
    /// The gateway and its sequence (usage only).
    pub origin: Option<(String, u64)>,
    /// The gateway process (usage from v2 on).
    pub instance: Option<String>,
    pub request: Option<RequestRow>,
}

impl Effects {
    /// The lines the store writes as rows: none for usage, whose request
    /// row the `journal` view reads as its lines.
    pub fn posted_lines(&self) -> &[Line] {
        if self.request.is_some() {
            &[]
        } else {
            &self.lines
        }
    }

    /// What the event adds to the account's spendable balance.
    pub fn balance_delta(&self) -> Money {
        self.lines
            .iter()
            .filter(|l| l.book == Book::CustomerCredits && l.account == self.account)
            .fold(Money::ZERO, |sum, l| sum + l.credit - l.debit)
    }
}

fn line(book: Book, account: AccountId, debit: Money, credit: Money, memo: String) -> Line {
    Line {
        book,
        account,
        debit,
        credit,
        memo,
    }
}

/// The effects of `envelope` on the ledger; `None` for events the ledger
/// does not apply at all (access events: the control plane folds them).
/// The live ledger and reconciliation both go through here, so they apply
/// exactly the same events.
pub fn effects(envelope: &Envelope) -> Option<Effects> {
    let event = &envelope.event;
    if event.subject() == events::subjects::ACCESS {
        return None;
    }
    let account = event.account();
    let mut effects = Effects {
        account,
        day: envelope.at.date_naive(),
        lines: Vec::new(),
        spend: None,
        limit: None,
        name: None,
        origin: None,
        instance: None,
        request: None,
    };
    let zero = Money::ZERO;
    match event {
        Event::UsageRecorded(u) => {
            if u.cost != zero {
                let memo = format!("{} {} via {}", u.request_id, u.model, u.provider);
                effects.lines = vec![
                    line(Book::CustomerCredits, account, u.cost, zero, memo.clone()),
                    line(Book::ProviderPayable, account, zero, u.cost, memo),
                ];
            }
            if u.outcome != Outcome::Failed {
                effects.spend = Some(u.cost);
            }
            effects.origin = Some((u.origin.gateway.clone(), u.origin.seq));
            effects.instance.clone_from(&u.origin.instance);
            effects.request = Some(RequestRow {
                request_id: u.request_id.clone(),
                key: u.key.clone(),
                model: u.model.clone(),
                provider: u.provider.clone(),
                input_tokens: u.tokens.input,
                output_tokens: u.tokens.output,
                cost: u.cost,
                total_ms: u.timings.total_ms,
                outcome: match u.outcome {
                    Outcome::Completed => "completed",
                    Outcome::Interrupted => "interrupted",
                    Outcome::ClientDisconnected => "client_disconnected",
                    Outcome::Failed => "failed",
                },
                kind: match u.kind {
                    events::RequestKind::Chat => "chat",
                    events::RequestKind::Embeddings => "embeddings",
                },
                tier: u.tier.clone().unwrap_or_default(),
                auto_score: u.auto.as_ref().map(|a| a.score),
                // The event lists the attempts before the one that answered.
                attempts: u32::try_from(
                    u.attempts.len() + usize::from(u.outcome != Outcome::Failed),
                )
                .unwrap_or(u32::MAX),
                first_byte_ms: u.timings.first_byte_ms,
                user: u.user.clone().unwrap_or_default(),
                tags: u.tags.clone(),
            });
        }
        Event::AccountOpened(o) => effects.name = Some(o.name.clone()),
        Event::CreditsGranted(g) => {
            let memo = format!("grant: {}", g.reason);
            effects.lines = vec![
                line(Book::Grants, account, g.amount, zero, memo.clone()),
                line(Book::CustomerCredits, account, zero, g.amount, memo),
            ];
        }
        Event::DepositSettled(d) => {
            let memo = match d.recharge {
                Some(_) => format!("auto-recharge {}", d.payment),
                None => format!("deposit {}", d.payment),
            };
            effects.lines = vec![
                line(Book::Cash, account, d.credits + d.fee, zero, memo.clone()),
                line(
                    Book::CustomerCredits,
                    account,
                    zero,
                    d.credits,
                    memo.clone(),
                ),
                line(Book::FeeRevenue, account, zero, d.fee, memo),
            ];
        }
        Event::DepositReversed(r) => {
            let memo = format!(
                "{} of deposit {} ({})",
                match r.reason {
                    events::Reversal::Refund => "refund",
                    events::Reversal::Dispute => "dispute",
                },
                r.payment,
                r.reference
            );
            effects.lines = vec![
                line(
                    Book::CustomerCredits,
                    account,
                    r.credits,
                    zero,
                    memo.clone(),
                ),
                line(Book::FeeRevenue, account, r.fee, zero, memo.clone()),
                line(Book::Cash, account, zero, r.credits + r.fee, memo),
            ];
        }
        Event::DepositReinstated(r) => {
            let memo = format!("dispute won: deposit {} ({})", r.payment, r.reference);
            effects.lines = vec![
                line(Book::Cash, account, r.credits + r.fee, zero, memo.clone()),
                line(
                    Book::CustomerCredits,
                    account,
                    zero,
                    r.credits,
                    memo.clone(),
                ),
                line(Book::FeeRevenue, account, zero, r.fee, memo),
            ];
        }
        // Settings the ledger keeps (auto-recharge); no money moves.
        Event::PaymentCustomerSet(_)
        | Event::CardSaved(_)
        | Event::CardRemoved(_)
        | Event::AutoRechargeSet(_)
        | Event::RechargeDeclined(_) => {}
        Event::DailyLimitSet(l) => effects.limit = Some(l.limit),
        Event::MemberInvited(_)
        | Event::MemberJoined(_)
        | Event::MemberRoleSet(_)
        | Event::MemberRemoved(_)
        | Event::InvitationWithdrawn(_)
        | Event::KeyIssued(_)
        | Event::KeyRevoked(_)
        | Event::KeyLimitsSet(_)
        | Event::AlertRulesSet(_)
        | Event::ProviderBlocked(_)
        | Event::ProviderUnblocked(_)
        | Event::TelemetryDestinationSet(_)
        | Event::TelemetryDestinationRemoved(_)
        | Event::ContentRecorded(_) => return None,
    }
    Some(effects)
}

/// Events for the ledger's own unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use events::{AccountId, Envelope, Event, Origin, Outcome, Timings, Tokens, UsageRecorded};

    /// A chat usage event of `account` costing `cost`.
    pub fn usage(account: AccountId, cost: &str) -> Envelope {
        Envelope::new(Event::UsageRecorded(Box::new(UsageRecorded {
            request_id: "req_1".into(),
            account,
            key: "k".into(),
            kind: events::RequestKind::Chat,
            model: "gpt-4.1".into(),
            provider: "openai".into(),
            tier: None,
            auto: None,
            prefer: None,
            tokens: Tokens::default(),
            cost: cost.parse().unwrap(),
            free: cost == "0",
            attempts: Vec::new(),
            timings: Timings::default(),
            outcome: Outcome::Completed,
            finish_reasons: Vec::new(),
            user: None,
            tags: Vec::new(),
            origin: Origin {
                gateway: "g".into(),
                seq: 1,
                instance: None,
            },
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::DepositSettled;

    fn usage(cost: &str) -> Envelope {
        super::tests_support::usage(AccountId(uuid::Uuid::nil()), cost)
    }

    #[test]
    fn every_event_balances_and_moves_the_right_books() {
        let account = AccountId(uuid::Uuid::nil());
        let deposit = Envelope::new(Event::DepositSettled(DepositSettled {
            account,
            credits: "100".parse().unwrap(),
            fee: "4".parse().unwrap(),
            payment: "pi_1".into(),
            recharge: None,
        }));
        let refund = Envelope::new(Event::DepositReversed(events::DepositReversed {
            account,
            payment: "pi_1".into(),
            reference: "ch_1:refunded:5200".into(),
            credits: "50".parse().unwrap(),
            fee: "2".parse().unwrap(),
            reason: events::Reversal::Refund,
        }));
        let won = Envelope::new(Event::DepositReinstated(events::DepositReinstated {
            account,
            payment: "pi_1".into(),
            reference: "dp_1".into(),
            credits: "50".parse().unwrap(),
            fee: "2".parse().unwrap(),
        }));
        assert_eq!(effects(&refund).unwrap().balance_delta().to_string(), "-50");
        assert_eq!(effects(&won).unwrap().balance_delta().to_string(), "50");
        for envelope in [usage("0.0025"), usage("0"), deposit.clone(), refund, won] {
            let e = effects(&envelope).unwrap();
            let debits = e.lines.iter().fold(Money::ZERO, |s, l| s + l.debit);
            let credits = e.lines.iter().fold(Money::ZERO, |s, l| s + l.credit);
            assert_eq!(debits, credits);
        }
        assert_eq!(
            effects(&deposit).unwrap().balance_delta().to_string(),
            "100"
        );
        assert_eq!(
            effects(&usage("0.0025"))
                .unwrap()
                .balance_delta()
                .to_string(),
            "-0.0025"
        );
        // Access events are the control plane's: the ledger applies none.
        let key = Envelope::new(Event::KeyRevoked(events::KeyRevoked {
            account,
            key: "k".into(),
            digest: "d".into(),
            by: None,
        }));
        assert!(effects(&key).is_none());
        // A failed request is listed, moves nothing and is not spend.
        let mut failed = usage("0");
        if let Event::UsageRecorded(u) = &mut failed.event {
            u.outcome = Outcome::Failed;
        }
        let failed = effects(&failed).unwrap();
        assert!(failed.lines.is_empty() && failed.spend.is_none());
        assert_eq!(failed.request.unwrap().outcome, "failed");
        // Free usage: no lines, but counted as a request.
        let free = effects(&usage("0")).unwrap();
        assert!(free.lines.is_empty());
        assert_eq!(free.spend, Some(Money::ZERO));
        assert!(free.request.is_some());
    }
}
