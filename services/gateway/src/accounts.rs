//! Credit and daily-limit enforcement from the ledger's account states.
//!
//! The ledger publishes each account's state (balance, today's spend, daily
//! limit, and per gateway process how many of its events are included) to
//! the `accounts` bucket; every gateway watches it. On top of the latest
//! state a gateway adds its own spend the state does not include yet (its
//! events after the first that many, in the order it wrote them, which is
//! the order the ledger applies them), so one gateway never overshoots by
//! more than the requests in flight. Other gateways' unapplied spend is unknown to it: with
//! N gateways the worst-case overshoot of a limit or a balance is what the
//! other N−1 serve between publishing and the ledger's next state
//! (its fold lag), plus each gateway's requests already in flight.
//!
//! Rules, per request:
//! - daily limit reached (today's spend ≥ limit) → 429 `daily_limit_exceeded`,
//!   `Retry-After` to the next UTC midnight; it applies to free models too;
//! - no credit left (balance ≤ 0) → paid models are skipped; free models
//!   (Groq, Cerebras) still serve, under a per-account rate limit
//!   (`gateway.accounts.free_requests_per_minute`, a GCRA bucket from the
//!   `governor` crate: that many at once, then one per 60/N seconds);
//! - an account the ledger has not published yet has no credit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use eventlog::LogError;
use events::{AccountId, AccountState, BudgetPeriod, KeyBudget, KeySpend};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use money::Money;
use serde::Deserialize;

use crate::error::GatewayError;

/// Enforcement settings (`[gateway.accounts]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// Requests per minute an account may send to free models (default 60).
    pub free_requests_per_minute: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            free_requests_per_minute: 60,
        }
    }
}

/// What an account may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Paid models may be used.
    pub paid: bool,
}

#[derive(Default)]
struct View {
    state: Option<AccountState>,
    /// This process's events the latest state includes.
    included: u64,
    /// This process's spend not yet in `state`: (cost, UTC day), in the
    /// order written, with running sums so a check costs the same however
    /// far the ledger lags.
    pending: VecDeque<(Money, NaiveDate, Option<Arc<str>>)>,
    pending_total: Money,
    pending_by_day: BTreeMap<NaiveDate, Money>,
    /// The same per key with a budget: key → (total, per day).
    pending_by_key: HashMap<Arc<str>, (Money, BTreeMap<NaiveDate, Money>)>,
}

impl View {
    /// This process's spend of `key` the state does not include yet: on
    /// `today`, in its month, in all.
    fn pending_of_key(&self, key: &str, today: NaiveDate) -> KeySpend {
        let Some((total, days)) = self.pending_by_key.get(key) else {
            return KeySpend::default();
        };
        let same_month = |d: &NaiveDate| d.year() == today.year() && d.month() == today.month();
        KeySpend {
            today: days.get(&today).copied().unwrap_or_default(),
            month: days
                .iter()
                .filter(|(d, _)| same_month(d))
                .fold(Money::ZERO, |sum, (_, m)| sum + *m),
            lifetime: *total,
        }
    }
}

/// Accounts the free-use limiter may remember before it forgets those
/// whose bucket is full again.
const FORGET_AFTER_KEYS: usize = 100_000;

/// The account views of one gateway process.
pub struct Accounts {
    instance: String,
    config: AccountsConfig,
    views: Mutex<HashMap<AccountId, View>>,
    /// Free-model requests of accounts without credit.
    free_use: DefaultKeyedRateLimiter<AccountId>,
}

impl Accounts {
    /// Views for the gateway process `instance` (its usage events' origin instance).
    pub fn new(instance: String, config: AccountsConfig) -> Arc<Accounts> {
        let per_minute =
            NonZeroU32::new(config.free_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        Arc::new(Accounts {
            instance,
            config,
            views: Mutex::default(),
            free_use: DefaultKeyedRateLimiter::hashmap(Quota::per_minute(per_minute)),
        })
    }

    fn with_view<T>(&self, account: AccountId, f: impl FnOnce(&mut View) -> T) -> T {
        let mut views = self
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(views.entry(account).or_default())
    }

    /// Takes a state the ledger published (an older version is ignored).
    pub fn apply(&self, state: AccountState) {
        let included = state
            .applied_events
            .get(&self.instance)
            .copied()
            .unwrap_or(0);
        self.with_view(state.account, |view| {
            if view
                .state
                .as_ref()
                .is_some_and(|s| s.version > state.version)
            {
                return;
            }
            while view.included < included {
                let Some((cost, day, key)) = view.pending.pop_front() else {
                    break;
                };
                view.included += 1;
                view.pending_total = view.pending_total - cost;
                if let Some(sum) = view.pending_by_day.get_mut(&day) {
                    *sum = *sum - cost;
                    if *sum == Money::ZERO {
                        view.pending_by_day.remove(&day);
                    }
                }
                if let Some(key) = key.filter(|_| cost > Money::ZERO) {
                    if let Some((total, days)) = view.pending_by_key.get_mut(&key) {
                        *total = *total - cost;
                        if let Some(sum) = days.get_mut(&day) {
                            *sum = *sum - cost;
                            if *sum == Money::ZERO {
                                days.remove(&day);
                            }
                        }
                        if *total == Money::ZERO {
                            view.pending_by_key.remove(&key);
                        }
                    }
                }
            }
            view.included = view.included.max(included);
            view.state = Some(state);
        });
    }

    /// Counts one of this process's events (every event, free and failed
    /// ones too, since the ledger counts them all) until the ledger's state
    /// includes it. `budgeted` names the event's key when the key has a
    /// budget, so its spend is counted per key too (other keys cost no
    /// allocation; a budget set while a key's events are pending counts
    /// them once the ledger's state includes them, milliseconds later).
    pub fn charge(&self, account: AccountId, budgeted: Option<&str>, cost: Money, day: NaiveDate) {
        self.with_view(account, |view| {
            let key: Option<Arc<str>> = budgeted.map(Arc::from);
            if let Some(key) = key.as_ref().filter(|_| cost > Money::ZERO) {
                let (total, days) = view.pending_by_key.entry(Arc::clone(key)).or_default();
                *total += cost;
                *days.entry(day).or_default() += cost;
            }
            view.pending.push_back((cost, day, key));
            view.pending_total += cost;
            *view.pending_by_day.entry(day).or_default() += cost;
        });
    }

    /// Whether `key` of `account` is within `budget` now: its spend in the
    /// budget's period (the ledger's state plus this process's spend the
    /// state does not include yet) is below the amount. Same accuracy as
    /// the daily limit (see the module's notes).
    pub fn check_budget(
        &self,
        account: AccountId,
        key: &str,
        budget: &KeyBudget,
        now: DateTime<Utc>,
    ) -> Result<(), GatewayError> {
        let today = now.date_naive();
        self.with_view(account, |view| {
            let pending = view.pending_of_key(key, today);
            let recorded = view
                .state
                .as_ref()
                .and_then(|s| s.keys.get(key).map(|k| (s.day, *k)));
            let recorded = match recorded {
                Some((day, k)) if day == today => k,
                Some((day, k)) if day.year() == today.year() && day.month() == today.month() => {
                    KeySpend {
                        today: Money::ZERO,
                        ..k
                    }
                }
                Some((_, k)) => KeySpend {
                    lifetime: k.lifetime,
                    ..KeySpend::default()
                },
                None => KeySpend::default(),
            };
            let (spent, retry_after_s) = match budget.period {
                BudgetPeriod::Daily => (recorded.today + pending.today, Some(until_midnight(now))),
                BudgetPeriod::Monthly => {
                    (recorded.month + pending.month, Some(until_next_month(now)))
                }
                BudgetPeriod::Lifetime => (recorded.lifetime + pending.lifetime, None),
            };
            if spent >= budget.amount {
                return Err(GatewayError::KeyBudgetExceeded {
                    budget: budget.amount,
                    period: budget.period.as_str(),
                    retry_after_s,
                });
            }
            Ok(())
        })
    }

    /// Whether `account` may send a request now, and to which models.
    pub fn allowance(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Allowance, GatewayError> {
        let today = now.date_naive();
        self.with_view(account, |view| {
            let pending_total = view.pending_total;
            let pending_today = view.pending_by_day.get(&today).copied().unwrap_or_default();
            let Some(state) = &view.state else {
                return Ok(Allowance { paid: false });
            };
            let spent = if state.day == today {
                state.spent_today + pending_today
            } else {
                pending_today
            };
            if let Some(limit) = state.daily_limit.filter(|&l| spent >= l) {
                return Err(GatewayError::DailyLimitExceeded {
                    limit,
                    retry_after_s: until_midnight(now),
                });
            }
            Ok(Allowance {
                paid: state.balance - pending_total > Money::ZERO,
            })
        })
    }

    /// Admits one free-model request under the per-account rate limit.
    pub fn admit_free(&self, account: AccountId) -> Result<(), GatewayError> {
        if self.free_use.len() > FORGET_AFTER_KEYS {
            self.free_use.retain_recent();
        }
        self.free_use.check_key(&account).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            GatewayError::FreeRateLimited {
                per_minute: self.config.free_requests_per_minute,
                retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    /// Waits (at most `within`) until the ledger's state of `account` is
    /// here; `false` if it did not come.
    pub async fn wait_for(
        &self,
        account: AccountId,
        within: Duration,
        until: impl Fn(&AccountState) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.with_view(account, |view| view.state.as_ref().is_some_and(&until)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Follows the ledger's `accounts` bucket: returns once every current
    /// state is in, then keeps following.
    pub async fn follow(self: &Arc<Self>, source: crate::follow::Source) -> Result<(), LogError> {
        let accounts = Arc::clone(self);
        crate::follow::follow(source, move |entry| {
            match serde_json::from_slice::<AccountState>(&entry.value) {
                Ok(state) => accounts.apply(state),
                Err(e) => tracing::error!(error = %e, "unreadable account state"),
            }
        })
        .await
    }
}

/// Seconds until the first moment of the next UTC month (at least 1).
fn until_next_month(now: DateTime<Utc>) -> u64 {
    let (year, month) = match now.month() {
        12 => (now.year() + 1, 1),
        m => (now.year(), m + 1),
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(86_400, |t| (t.and_utc() - now).num_seconds().max(1) as u64)
}

/// Seconds until the next UTC midnight (at least 1).
fn until_midnight(now: DateTime<Utc>) -> u64 {
    let tomorrow = now
        .date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    tomorrow.map_or(86_400, |t| (t - now).num_seconds().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn state(
        account: AccountId,
        balance: &str,
        spent: &str,
        limit: Option<&str>,
        version: u64,
        applied: u64,
    ) -> AccountState {
        AccountState {
            account,
            balance: balance.parse().unwrap(),
            day: Utc::now().date_naive(),
            spent_today: spent.parse().unwrap(),
            daily_limit: limit.map(|l| l.parse().unwrap()),
            version,
            applied: BTreeMap::new(),
            applied_events: BTreeMap::from([("gw".to_owned(), applied)]),
            keys: BTreeMap::new(),
        }
    }

    #[test]
    fn key_budgets_count_pending_spend_then_the_ledgers() {
        let accounts = Accounts::new("gw".into(), AccountsConfig::default());
        let a = AccountId::new();
        let now = Utc::now();
        let usd = |s: &str| s.parse::<Money>().unwrap();
        let daily = KeyBudget {
            amount: usd("1"),
            period: BudgetPeriod::Daily,
        };
        let over =
            |r: Result<(), GatewayError>| matches!(r, Err(GatewayError::KeyBudgetExceeded { .. }));
        accounts.apply(state(a, "100", "0", None, 1, 0));
        accounts.charge(a, Some("k"), usd("0.6"), now.date_naive());
        accounts.charge(a, Some("other"), usd("5"), now.date_naive());
        accounts.check_budget(a, "k", &daily, now).unwrap();
        accounts.charge(a, Some("k"), usd("0.6"), now.date_naive());
        assert!(over(accounts.check_budget(a, "k", &daily, now)));
        accounts
            .check_budget(
                a,
                "other",
                &KeyBudget {
                    amount: usd("6"),
                    ..daily
                },
                now,
            )
            .unwrap();
        // The ledger's state takes all three: nothing pending, the state refuses.
        let mut folded = state(a, "93.8", "6.2", None, 2, 3);
        let spent = KeySpend {
            today: usd("1.2"),
            month: usd("1.2"),
            lifetime: usd("1.2"),
        };
        folded.keys.insert("k".into(), spent);
        accounts.apply(folded);
        assert!(accounts.with_view(a, |v| v.pending_by_key.is_empty()));
        assert!(over(accounts.check_budget(a, "k", &daily, now)));
        // The next day a daily budget starts again; a lifetime one does not.
        let tomorrow = now + chrono::Duration::days(1);
        accounts.check_budget(a, "k", &daily, tomorrow).unwrap();
        let lifetime = KeyBudget {
            period: BudgetPeriod::Lifetime,
            ..daily
        };
        match accounts.check_budget(a, "k", &lifetime, tomorrow) {
            Err(GatewayError::KeyBudgetExceeded { retry_after_s, .. }) => {
                assert_eq!(retry_after_s, None)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_long_ledger_lag_keeps_exact_sums() {
        let accounts = Accounts::new("gw".into(), AccountsConfig::default());
        let a = AccountId::new();
        let now = Utc::now();
        accounts.apply(state(a, "100", "0", None, 1, 0));
        for _ in 1..=100_000 {
            accounts.charge(a, Some("k"), Money::from_nanos(1_000), now.date_naive());
        }
        // $100 - 100,000 × $0.000001 = $99.9 left.
        assert!(accounts.allowance(a, now).unwrap().paid);
        accounts.apply(state(a, "99.95", "0.05", None, 2, 50_000));
        accounts.with_view(a, |view| {
            assert_eq!(view.pending.len(), 50_000);
            assert_eq!(view.pending_total, Money::from_nanos(50_000_000));
            assert_eq!(view.pending_by_day[&now.date_naive()], view.pending_total);
        });
    }

    #[test]
    fn own_unapplied_spend_counts_until_the_ledger_includes_it() {
        let accounts = Accounts::new("gw".into(), AccountsConfig::default());
        let a = AccountId::new();
        let now = Utc::now();
        assert_eq!(
            accounts.allowance(a, now).unwrap(),
            Allowance { paid: false }
        );
        accounts.apply(state(a, "1", "0", Some("2"), 1, 0));
        assert!(accounts.allowance(a, now).unwrap().paid);
        // Two requests of $0.60 served here, not yet in the state.
        accounts.charge(a, Some("k"), "0.6".parse().unwrap(), now.date_naive());
        accounts.charge(a, Some("k"), "0.6".parse().unwrap(), now.date_naive());
        assert!(
            !accounts.allowance(a, now).unwrap().paid,
            "balance 1 - 1.2 pending"
        );
        // The ledger includes the first: balance 0.4, pending 0.6.
        accounts.apply(state(a, "0.4", "0.6", Some("2"), 2, 1));
        assert!(!accounts.allowance(a, now).unwrap().paid);
        // An older state arriving late changes nothing.
        accounts.apply(state(a, "5", "0", Some("2"), 1, 0));
        assert!(!accounts.allowance(a, now).unwrap().paid);
        // Spend reaches the limit: refused with the time to midnight.
        accounts.apply(state(a, "10", "1.5", Some("2"), 3, 1));
        let err = accounts.allowance(a, now).unwrap_err();
        match err {
            GatewayError::DailyLimitExceeded { retry_after_s, .. } => {
                assert!((1..=86_400).contains(&retry_after_s))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn free_requests_are_rate_limited_per_account() {
        let accounts = Accounts::new(
            "gw".into(),
            AccountsConfig {
                free_requests_per_minute: 3,
            },
        );
        let (a, b) = (AccountId::new(), AccountId::new());
        for _ in 0..3 {
            accounts.admit_free(a).unwrap();
        }
        assert!(matches!(
            accounts.admit_free(a),
            Err(GatewayError::FreeRateLimited {
                retry_after_s: 1..=60,
                ..
            })
        ));
        accounts.admit_free(b).unwrap();
    }
}
