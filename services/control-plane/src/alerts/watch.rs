//! Evaluates each account state the ledger publishes (the `accounts`
//! bucket, as gateways watch it) against the account's alert rules: the
//! daily limit's and each key budget's percentages, and the balance floor.

use std::sync::Arc;
use std::time::Duration;

use events::{AccountState, BudgetPeriod, ACCOUNTS_BUCKET};
use futures_util::StreamExt;
use money::Money;
use sqlx::Row;

use super::{fire, rules_on, Alert};
use crate::error::CpError;
use crate::ControlPlane;

/// Whether `spent` is at least `percent`% of `of` (exact, in nano-dollars).
fn reached(spent: Money, of: Money, percent: u8) -> bool {
    of > Money::ZERO
        && i128::from(spent.nanos()) * 100 >= i128::from(of.nanos()) * i128::from(percent)
}

/// Follows the `accounts` bucket until the process ends, reopening the
/// watch when it fails.
pub async fn run(cp: Arc<ControlPlane>) {
    loop {
        if let Err(e) = follow(&cp).await {
            tracing::warn!(error = %e, "alert watch stopped; watching again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(cp: &ControlPlane) -> Result<(), CpError> {
    let bucket = cp.log.bucket(ACCOUNTS_BUCKET).await?;
    let mut entries = bucket.watch().await?;
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        let Ok(state) = serde_json::from_slice::<AccountState>(&entry.value) else {
            continue;
        };
        if let Err(e) = evaluate(cp, &state).await {
            tracing::warn!(account = %state.account, error = %e, "alert rules not evaluated");
        }
    }
    Ok(())
}

/// Fires what `state` crosses of its account's rules.
pub async fn evaluate(cp: &ControlPlane, state: &AccountState) -> Result<(), CpError> {
    let mut conn = cp.store.pool.acquire().await?;
    let Some(rules) = rules_on(&mut conn, state.account).await? else {
        return Ok(());
    };
    let day = state.day;
    let mut alerts = Vec::new();
    if let Some(limit) = state.daily_limit {
        for &p in rules.daily_limit_percents.iter().rev() {
            if reached(state.spent_today, limit, p) {
                alerts.push((
                    format!("daily:{day}:{p}"),
                    "daily_limit",
                    format!(
                        "Spend today (${}) reached {p}% of the daily limit of ${limit} ({day}, UTC).",
                        state.spent_today
                    ),
                ));
                break;
            }
        }
    }
    if let Some(floor) = rules.balance_below.filter(|&f| state.balance < f) {
        alerts.push((
            format!("balance:{day}"),
            "balance_low",
            format!("The balance (${}) is below ${floor}.", state.balance),
        ));
    }
    if !rules.key_budget_percents.is_empty() {
        let keys = sqlx::query(
            "SELECT id, name, budget, budget_period FROM api_keys
             WHERE account = $1 AND budget IS NOT NULL AND revoked_at IS NULL",
        )
        .bind(state.account.to_string())
        .fetch_all(&mut *conn)
        .await?;
        for key in &keys {
            let id: String = key.try_get("id")?;
            let name: String = key.try_get("name")?;
            let budget = Money::from_nanos(key.try_get("budget")?);
            let period: String = key.try_get("budget_period")?;
            let Some(spent) = state.keys.get(&id) else {
                continue;
            };
            let (spent, instance) = match BudgetPeriod::parse(&period) {
                Some(BudgetPeriod::Daily) => (spent.today, day.to_string()),
                Some(BudgetPeriod::Monthly) => (spent.month, day.format("%Y-%m").to_string()),
                Some(BudgetPeriod::Lifetime) => (spent.lifetime, "life".to_owned()),
                None => continue,
            };
            for &p in rules.key_budget_percents.iter().rev() {
                if reached(spent, budget, p) {
                    alerts.push((
                        format!("key:{id}:{instance}:{p}"),
                        "key_budget",
                        format!(
                            "Key “{name}” ({id}) spent ${spent}, at or over {p}% of its {period} budget of ${budget}."
                        ),
                    ));
                    break;
                }
            }
        }
    }
    // An alert and its deliveries commit together: a process killed between
    // them must not leave an alert that never goes out (its dedupe name
    // would stop it from firing again).
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut raised = false;
    for (dedupe, kind, message) in alerts {
        raised |= fire(
            &mut tx,
            Alert {
                account: state.account,
                dedupe,
                kind,
                message,
                rules: &rules,
            },
        )
        .await?;
    }
    tx.commit().await?;
    if raised {
        cp.projector.alerts_raised().notify_one();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentages_are_exact_at_the_boundary() {
        let usd = |s: &str| s.parse::<money::Money>().unwrap();
        assert!(super::reached(usd("0.8"), usd("1"), 80));
        assert!(!super::reached(usd("0.799999999"), usd("1"), 80));
        assert!(
            !super::reached(usd("5"), money::Money::ZERO, 50),
            "no limit, no alert"
        );
    }
}
