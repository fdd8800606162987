//! `/billing` (owners): balance, deposits through Stripe Checkout (the fee
//! and total shown before paying), the saved card, auto-recharge, the
//! history with running balance, and the account's journal as CSV.

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use money::Money;
use payments::Deposit;
use serde::Deserialize;

use super::{html, no_store, see_other, CsrfOnly, Nav, Page};
use crate::billing::{AutoRecharge, HistoryRow};
use crate::error::CpError;
use crate::extract::{CheckedForm, Csrf, Signed};
use crate::input::day_range;
use crate::ops::Member;
use crate::ControlPlane;

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    nav: Nav,
    balance: Money,
    payments: bool,
    min: money::Cents,
    max: money::Cents,
    auto: AutoRecharge,
    threshold_input: String,
    amount_input: String,
    history: Vec<HistoryRow>,
    from: String,
    to: String,
}

#[derive(Template)]
#[template(path = "deposit.html")]
struct DepositPage {
    nav: Nav,
    deposit: Deposit,
    total: money::Cents,
}

#[derive(Deserialize, Default)]
pub(super) struct Returned {
    #[serde(default)]
    deposit: String,
    #[serde(default)]
    card: String,
}

#[derive(Deserialize)]
pub(super) struct AmountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
}

#[derive(Deserialize)]
pub(super) struct AutoRechargeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    threshold: String,
    #[serde(default)]
    amount: String,
}

csrf_forms!(AmountForm, AutoRechargeForm);

async fn view(
    cp: &ControlPlane,
    member: &Member,
    csrf: Csrf,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, CpError> {
    member.require_owner()?;
    let usage = cp.usage_of(member.account).await?;
    let auto = cp.auto_recharge_of(member.account).await?;
    let history = cp.history_of(member.account).await?;
    let limits = cp.deposit_limits();
    let today = chrono::Utc::now().date_naive();
    let mut nav = Nav::new(member, csrf, "billing");
    nav.notice = notice.map(str::to_owned);
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    nav.error = error;
    let page = BillingPage {
        nav,
        balance: usage.balance,
        payments: cp.takes_payments(),
        min: limits.min,
        max: limits.max,
        threshold_input: if auto.amount > Money::ZERO {
            auto.threshold.to_string()
        } else {
            "5".into()
        },
        amount_input: if auto.amount > Money::ZERO {
            auto.amount.to_string()
        } else {
            "20".into()
        },
        auto,
        history,
        from: (today - chrono::Duration::days(30)).to_string(),
        to: today.to_string(),
    };
    Ok((status, html(&page)).into_response())
}

pub(super) async fn billing_page(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    Query(returned): Query<Returned>,
) -> Page {
    let notice = match (returned.deposit.as_str(), returned.card.as_str()) {
        ("paid", _) => Some(
            "Payment received. The credits appear as soon as Stripe confirms it (a few seconds).",
        ),
        ("cancelled", _) => Some("Payment cancelled; nothing was charged."),
        (_, "saved") => Some("Card saved. It appears here as soon as Stripe confirms it."),
        (_, "cancelled") => Some("No card was saved."),
        _ => None,
    };
    Ok(view(&cp, &member, csrf, notice, None).await?)
}

/// Shows what the deposit costs before paying.
pub(super) async fn review_deposit(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<AmountForm>,
) -> Page {
    member.require_owner()?;
    match cp.deposit_of(&f.amount) {
        Ok(deposit) => Ok(html(&DepositPage {
            nav: Nav::new(&member, csrf, "billing"),
            total: deposit.total(),
            deposit,
        })),
        Err(e) => Ok(view(&cp, &member, csrf, None, Some(e.to_string())).await?),
    }
}

/// Sends the owner to Stripe Checkout to pay.
pub(super) async fn pay_deposit(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<AmountForm>,
) -> Page {
    match cp.start_deposit(&member, &f.amount).await {
        Ok((_, checkout)) => Ok(no_store(Redirect::to(&checkout.url).into_response())),
        Err(e @ CpError::BadInput(_)) => {
            Ok(view(&cp, &member, csrf, None, Some(e.to_string())).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends the owner to Stripe Checkout to save a card.
pub(super) async fn save_card(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    let checkout = cp.start_card_setup(&member).await?;
    Ok(no_store(Redirect::to(&checkout.url).into_response()))
}

pub(super) async fn remove_card(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    _: CheckedForm<CsrfOnly>,
) -> Page {
    cp.remove_card(&member).await?;
    Ok(see_other("/billing"))
}

pub(super) async fn set_auto_recharge(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    csrf: Csrf,
    CheckedForm(f): CheckedForm<AutoRechargeForm>,
) -> Page {
    let enabled = f.enabled.as_deref() == Some("on");
    match cp
        .set_auto_recharge(&member, enabled, &f.threshold, &f.amount)
        .await
    {
        Ok(_) => Ok(see_other("/billing")),
        Err(e @ CpError::BadInput(_)) => {
            Ok(view(&cp, &member, csrf, None, Some(e.to_string())).await?)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(super) struct Range {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// The account's journal lines as CSV (the columns of `modelrouter ledger export`).
pub(super) async fn journal_csv(
    State(cp): State<Arc<ControlPlane>>,
    Signed(member): Signed,
    Query(range): Query<Range>,
) -> Page {
    member.require_owner()?;
    let (from, to) = day_range(&range.from, &range.to)?;
    let csv = cp.journal_csv(member.account, from, to).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"journal-{from}-{to}.csv\""),
            ),
        ],
        csv,
    )
        .into_response())
}

impl ControlPlane {
    /// The account's journal of `from`..=`to` as CSV.
    pub async fn journal_csv(
        &self,
        account: events::AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<u8>, CpError> {
        let mut out = Vec::new();
        ledger::export::export(&self.store, Some(&account.to_string()), from, to, &mut out).await?;
        Ok(out)
    }
}

/// This area's routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/billing", get(billing_page))
        .route("/billing/deposit", post(review_deposit))
        .route("/billing/deposit/pay", post(pay_deposit))
        .route("/billing/card", post(save_card))
        .route("/billing/card/remove", post(remove_card))
        .route("/billing/auto-recharge", post(set_auto_recharge))
        .route("/billing/journal.csv", get(journal_csv))
}
