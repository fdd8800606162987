//! The Stripe API calls Model Router makes, through the `async-stripe`
//! crate: customers, Checkout Sessions for deposits and for saving a card,
//! off-session PaymentIntents for auto-recharge (idempotent on a key the
//! caller derives from what triggered them), and the lists reconciliation
//! reads. `api_base` points the client at Stripe's stand-in in tests and
//! simulator mode.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::TryStreamExt;
use money::Cents;
use serde::Deserialize;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, CreateCheckoutSessionSetupIntentData, ProductData,
};
use stripe_checkout::CheckoutSessionMode;
use stripe_core::customer::CreateCustomer;
use stripe_core::dispute::ListDispute;
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentOffSession, ListPaymentIntent, RetrievePaymentIntent,
};
use stripe_core::refund::ListRefund;
use stripe_core::setup_intent::RetrieveSetupIntent;
use stripe_payment::payment_method::{DetachPaymentMethod, RetrievePaymentMethod};
use stripe_types::{Currency, Expandable};

use crate::Deposit;

/// How to reach Stripe (`[stripe]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeConfig {
    /// The secret API key (`sk_live_…` or `sk_test_…`); payments are off without it.
    pub secret_key: Option<String>,
    /// Webhook endpoint secrets (`whsec_…`), the current one first; an old
    /// one stays listed while Stripe may still sign with it.
    pub webhook_secrets: Vec<String>,
    /// Stripe's API address; its public one when unset.
    pub api_base: Option<String>,
}

/// Why a Stripe call failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// No secret key is configured.
    #[error("card payments are not configured (no Stripe secret key)")]
    NotConfigured,
    /// Stripe refused the request, or could not be reached.
    #[error("Stripe: {0}")]
    Stripe(String),
    /// Stripe answered with something this build cannot use.
    #[error("Stripe answered unexpectedly: {0}")]
    Unexpected(String),
}

impl From<StripeError> for PaymentsError {
    fn from(e: StripeError) -> Self {
        match e {
            StripeError::Stripe(errors, status) => PaymentsError::Stripe(format!(
                "{status} {}",
                errors.message.as_deref().unwrap_or("(no message)")
            )),
            other => PaymentsError::Stripe(other.to_string()),
        }
    }
}

/// A page to send a payer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub session: String,
    pub url: String,
}

/// What an off-session charge came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Paid: the PaymentIntent.
    Succeeded { payment_intent: String },
    /// Refused by the card or the bank (or it needs the payer present).
    Declined {
        payment_intent: Option<String>,
        code: String,
        message: String,
    },
}

/// A saved card as shown to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub payment_method: String,
    pub brand: String,
    pub last4: String,
}

/// A succeeded PaymentIntent, as reconciliation matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidIntent {
    pub id: String,
    pub amount: Cents,
    pub metadata: HashMap<String, String>,
}

/// A refund or dispute, as reconciliation matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    pub id: String,
    pub payment_intent: Option<String>,
    pub amount: Cents,
    pub status: String,
}

/// The Stripe client (cheap to clone: clones share connections).
#[derive(Clone)]
pub struct Stripe {
    client: Client,
}

/// Metadata every object we create carries, so it can be traced back.
fn metadata(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

impl Stripe {
    /// A client for `config`; [`PaymentsError::NotConfigured`] without a key.
    pub fn new(config: &StripeConfig) -> Result<Stripe, PaymentsError> {
        let key = config
            .secret_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or(PaymentsError::NotConfigured)?;
        let mut builder = ClientBuilder::new(key).timeout(Duration::from_secs(30));
        if let Some(base) = &config.api_base {
            // The client appends `v1/...` to the base as given.
            builder = builder.url(format!("{}/", base.trim_end_matches('/')));
        }
        Ok(Stripe {
            client: builder.build()?,
        })
    }

    /// A customer for the account (saved cards and payments hang off it).
    pub async fn create_customer(
        &self,
        account: &str,
        email: &str,
    ) -> Result<String, PaymentsError> {
        let customer = CreateCustomer::new()
            .email(email)
            .metadata(metadata(&[("account", account.to_owned())]))
            .send(&self.client)
            .await?;
        Ok(customer.id.to_string())
    }

    /// A Checkout Session charging `deposit`: the credits and the fee as two
    /// line items, the account and the amounts in the metadata of the
    /// session and of its PaymentIntent.
    pub async fn checkout_deposit(
        &self,
        customer: &str,
        account: &str,
        deposit: Deposit,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<Checkout, PaymentsError> {
        let tags = metadata(&[
            ("account", account.to_owned()),
            ("kind", "deposit".to_owned()),
            ("credits_cents", deposit.credits.0.to_string()),
            ("fee_cents", deposit.fee.0.to_string()),
        ]);
        let item = |name: &str, cents: Cents| {
            let mut price = CreateCheckoutSessionLineItemsPriceData::new(Currency::USD);
            price.unit_amount = Some(cents.0);
            price.product_data = Some(ProductData::new(name));
            let mut line = CreateCheckoutSessionLineItems::new();
            line.price_data = Some(price);
            line.quantity = Some(1);
            line
        };
        let mut intent = CreateCheckoutSessionPaymentIntentData::new();
        intent.metadata = Some(tags.clone());
        intent.description = Some(format!("Model Router credits ${}", deposit.credits));
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .customer(customer)
            .client_reference_id(account)
            .line_items(vec![
                item("Model Router credits", deposit.credits),
                item("Deposit fee (4%)", deposit.fee),
            ])
            .payment_intent_data(intent)
            .metadata(tags)
            .success_url(success_url)
            .cancel_url(cancel_url)
            .send(&self.client)
            .await?;
        checkout(session.id.to_string(), session.url)
    }

    /// A Checkout Session in setup mode: the payer saves a card for
    /// auto-recharge, nothing is charged.
    pub async fn checkout_setup(
        &self,
        customer: &str,
        account: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<Checkout, PaymentsError> {
        let tags = metadata(&[
            ("account", account.to_owned()),
            ("kind", "save_card".to_owned()),
        ]);
        let mut intent = CreateCheckoutSessionSetupIntentData::new();
        intent.metadata = Some(tags.clone());
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Setup)
            .currency(Currency::USD)
            .customer(customer)
            .client_reference_id(account)
            .setup_intent_data(intent)
            .metadata(tags)
            .success_url(success_url)
            .cancel_url(cancel_url)
            .send(&self.client)
            .await?;
        checkout(session.id.to_string(), session.url)
    }

    /// The account a PaymentIntent was made for (its `account` metadata);
    /// `None` for payments the router did not make.
    pub async fn intent_account(
        &self,
        payment_intent: &str,
    ) -> Result<Option<String>, PaymentsError> {
        let intent = RetrievePaymentIntent::new(payment_intent)
            .send(&self.client)
            .await?;
        Ok(intent.metadata.get("account").cloned())
    }

    /// The card a completed setup saved.
    pub async fn saved_card(&self, setup_intent: &str) -> Result<Card, PaymentsError> {
        let intent = RetrieveSetupIntent::new(setup_intent)
            .send(&self.client)
            .await?;
        let method = match intent.payment_method {
            Some(Expandable::Id(id)) => id.to_string(),
            Some(Expandable::Object(method)) => method.id.to_string(),
            None => {
                return Err(PaymentsError::Unexpected(format!(
                    "setup intent {setup_intent} has no payment method"
                )))
            }
        };
        let method = RetrievePaymentMethod::new(method.as_str())
            .send(&self.client)
            .await?;
        let card = method.card.ok_or_else(|| {
            PaymentsError::Unexpected(format!("payment method {} is not a card", method.id))
        })?;
        Ok(Card {
            payment_method: method.id.to_string(),
            brand: card.brand,
            last4: card.last4,
        })
    }

    /// Detaches a saved card from its customer (it can no longer be charged).
    pub async fn forget_card(&self, payment_method: &str) -> Result<(), PaymentsError> {
        DetachPaymentMethod::new(payment_method)
            .send(&self.client)
            .await?;
        Ok(())
    }

    /// Charges a saved card for `deposit` with the payer away (auto-recharge).
    /// `key` makes it idempotent: sending it again, even after a crash,
    /// returns the same PaymentIntent instead of charging twice.
    pub async fn charge_off_session(
        &self,
        customer: &str,
        payment_method: &str,
        deposit: Deposit,
        key: &str,
        tags: &[(&str, String)],
    ) -> Result<Charged, PaymentsError> {
        let key = IdempotencyKey::new(key)
            .map_err(|e| PaymentsError::Unexpected(format!("idempotency key: {e:?}")))?;
        let mut all = metadata(tags);
        all.insert("credits_cents".into(), deposit.credits.0.to_string());
        all.insert("fee_cents".into(), deposit.fee.0.to_string());
        let sent = CreatePaymentIntent::new(deposit.total().0, Currency::USD)
            .customer(customer)
            .payment_method(payment_method)
            .off_session(CreatePaymentIntentOffSession::Bool(true))
            .confirm(true)
            .description(format!("Model Router auto-recharge ${}", deposit.credits))
            .metadata(all)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await;
        match sent {
            Ok(intent) if intent.status.as_str() == "succeeded" => Ok(Charged::Succeeded {
                payment_intent: intent.id.to_string(),
            }),
            Ok(intent) => Ok(Charged::Declined {
                payment_intent: Some(intent.id.to_string()),
                code: intent.status.as_str().to_owned(),
                message: "the payment needs the card holder (authentication)".into(),
            }),
            Err(StripeError::Stripe(errors, 402)) => Ok(Charged::Declined {
                payment_intent: errors.payment_intent.as_ref().map(|p| p.id.to_string()),
                code: errors
                    .decline_code
                    .clone()
                    .or_else(|| errors.code.as_ref().map(|c| c.as_str().to_owned()))
                    .unwrap_or_else(|| "card_declined".into()),
                message: errors
                    .message
                    .clone()
                    .unwrap_or_else(|| "the card was declined".into()),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Every succeeded PaymentIntent (for reconciliation).
    pub async fn paid_intents(&self) -> Result<Vec<PaidIntent>, PaymentsError> {
        let pages = ListPaymentIntent::new().limit(PAGE).paginate();
        let intents: Vec<_> = pages.stream(&self.client).try_collect().await?;
        Ok(intents
            .into_iter()
            .filter(|intent| intent.status.as_str() == "succeeded")
            .map(|intent| PaidIntent {
                id: intent.id.to_string(),
                amount: Cents(intent.amount),
                metadata: intent.metadata,
            })
            .collect())
    }

    /// Every refund (for reconciliation).
    pub async fn refunds(&self) -> Result<Vec<Reversal>, PaymentsError> {
        let pages = ListRefund::new().limit(PAGE).paginate();
        let refunds: Vec<_> = pages.stream(&self.client).try_collect().await?;
        Ok(refunds
            .into_iter()
            .map(|refund| Reversal {
                id: refund.id.to_string(),
                payment_intent: refund.payment_intent.as_ref().map(|p| p.id().to_string()),
                amount: Cents(refund.amount),
                status: refund.status.unwrap_or_default(),
            })
            .collect())
    }

    /// Every dispute (for reconciliation).
    pub async fn disputes(&self) -> Result<Vec<Reversal>, PaymentsError> {
        let pages = ListDispute::new().limit(PAGE).paginate();
        let disputes: Vec<_> = pages.stream(&self.client).try_collect().await?;
        Ok(disputes
            .into_iter()
            .map(|dispute| Reversal {
                id: dispute.id.to_string(),
                payment_intent: dispute.payment_intent.as_ref().map(|p| p.id().to_string()),
                amount: Cents(dispute.amount),
                status: dispute.status.as_str().to_owned(),
            })
            .collect())
    }
}

/// Objects per page when listing (Stripe's maximum).
const PAGE: i64 = 100;

fn checkout(session: String, url: Option<String>) -> Result<Checkout, PaymentsError> {
    let url = url.ok_or_else(|| {
        PaymentsError::Unexpected(format!("checkout session {session} has no url"))
    })?;
    Ok(Checkout { session, url })
}
