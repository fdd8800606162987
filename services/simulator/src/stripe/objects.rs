//! Stripe's objects as its API returns them (the fields the official
//! clients require, and the ones a deposit flow reads), built as JSON.

use serde_json::{json, Value};

/// Card numbers of Stripe's test mode and what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCard {
    /// Pays (`4242 4242 4242 4242`, `5555 5555 5555 4444`).
    Succeeds,
    /// Declined at once (`4000 0000 0000 0002`).
    Declined,
    /// Declined for insufficient funds (`4000 0000 0000 9995`).
    InsufficientFunds,
    /// Saves fine; every later charge is declined (`4000 0000 0000 0341`).
    FailsLater,
    /// Pays, then the payment is disputed (`4000 0000 0000 0259`).
    Disputed,
}

impl TestCard {
    /// The behaviour of `number` (spaces ignored); `None` for an unknown number.
    pub fn of(number: &str) -> Option<TestCard> {
        let digits: String = number.chars().filter(|c| !c.is_whitespace()).collect();
        match digits.as_str() {
            "4242424242424242" | "5555555555554444" => Some(TestCard::Succeeds),
            "4000000000000002" => Some(TestCard::Declined),
            "4000000000009995" => Some(TestCard::InsufficientFunds),
            "4000000000000341" => Some(TestCard::FailsLater),
            "4000000000000259" => Some(TestCard::Disputed),
            _ => None,
        }
    }

    /// The decline this card gives a charge, if it gives one: (decline
    /// code, message). `saving` is a setup, which only `Declined` and
    /// `InsufficientFunds` refuse.
    pub fn decline(self, saving: bool) -> Option<(&'static str, &'static str)> {
        match self {
            TestCard::Declined => Some(("generic_decline", "Your card was declined.")),
            TestCard::InsufficientFunds => {
                Some(("insufficient_funds", "Your card has insufficient funds."))
            }
            TestCard::FailsLater if !saving => Some(("generic_decline", "Your card was declined.")),
            _ => None,
        }
    }
}

pub fn customer(id: &str, email: Option<&str>, metadata: &Value, created: i64) -> Value {
    json!({
        "id": id, "object": "customer", "address": null, "balance": 0, "created": created,
        "currency": null, "default_source": null, "delinquent": false, "description": null,
        "email": email, "livemode": false, "metadata": metadata, "name": null,
        "phone": null, "preferred_locales": [], "shipping": null, "tax_exempt": "none",
        "test_clock": null
    })
}

/// Fields every Checkout Session has, whatever its mode.
pub struct SessionParts<'a> {
    pub id: &'a str,
    pub mode: &'a str,
    pub customer: Option<&'a str>,
    pub client_reference_id: Option<&'a str>,
    pub metadata: &'a Value,
    pub amount_total: Option<i64>,
    pub success_url: Option<&'a str>,
    pub cancel_url: Option<&'a str>,
    pub url: &'a str,
    pub created: i64,
}

pub fn checkout_session(p: SessionParts<'_>) -> Value {
    json!({
        "id": p.id, "object": "checkout.session", "adaptive_pricing": null,
        "after_expiration": null, "allow_promotion_codes": null,
        "amount_subtotal": p.amount_total, "amount_total": p.amount_total,
        "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
        "billing_address_collection": null, "cancel_url": p.cancel_url,
        "client_reference_id": p.client_reference_id, "client_secret": null,
        "consent": null, "consent_collection": null, "created": p.created,
        "currency": "usd", "custom_fields": [],
        "custom_text": {"after_submit": null, "shipping_address": null, "submit": null,
                        "terms_of_service_acceptance": null},
        "customer": p.customer, "customer_creation": null, "customer_details": null,
        "customer_email": null, "expires_at": p.created + 24 * 3600, "invoice": null,
        "invoice_creation": null, "livemode": false, "locale": null, "metadata": p.metadata,
        "mode": p.mode, "payment_intent": null, "payment_link": null,
        "payment_method_collection": "always", "payment_method_types": ["card"],
        "payment_status": if p.mode == "setup" { "no_payment_required" } else { "unpaid" },
        "phone_number_collection": null, "recovered_from": null, "setup_intent": null,
        "shipping_address_collection": null, "shipping_cost": null, "shipping_options": [],
        "status": "open", "submit_type": null, "subscription": null,
        "success_url": p.success_url, "total_details": null, "ui_mode": "hosted", "url": p.url
    })
}

/// A card PaymentMethod.
pub fn payment_method(id: &str, customer: Option<&str>, number: &str, created: i64) -> Value {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let last4 = digits
        .get(digits.len().saturating_sub(4)..)
        .unwrap_or("0000");
    let brand = if digits.starts_with('5') {
        "mastercard"
    } else {
        "visa"
    };
    json!({
        "id": id, "object": "payment_method", "allow_redisplay": "unspecified",
        "billing_details": {"address": null, "email": null, "name": null, "phone": null, "tax_id": null},
        "card": {
            "brand": brand, "checks": null, "country": "US", "display_brand": brand,
            "exp_month": 12, "exp_year": 2034, "fingerprint": format!("fp{last4}{brand}"),
            "funding": "credit", "generated_from": null, "last4": last4, "networks": null,
            "regulated_status": "unregulated", "three_d_secure_usage": null, "wallet": null
        },
        "created": created, "customer": customer, "livemode": false, "metadata": {},
        "type": "card"
    })
}

/// Fields of a PaymentIntent.
pub struct IntentParts<'a> {
    pub id: &'a str,
    pub amount: i64,
    pub customer: Option<&'a str>,
    pub payment_method: Option<&'a str>,
    pub metadata: &'a Value,
    pub description: Option<&'a str>,
    pub created: i64,
}

pub fn payment_intent(
    p: IntentParts<'_>,
    status: &str,
    charge: Option<&str>,
    error: Option<Value>,
) -> Value {
    let received = if status == "succeeded" { p.amount } else { 0 };
    json!({
        "id": p.id, "object": "payment_intent", "amount": p.amount, "amount_capturable": 0,
        "amount_received": received, "application": null, "canceled_at": null,
        "cancellation_reason": null, "capture_method": "automatic_async",
        "client_secret": format!("{}_secret_sim", p.id), "confirmation_method": "automatic",
        "created": p.created, "currency": "usd", "customer": p.customer,
        "description": p.description, "last_payment_error": error, "latest_charge": charge,
        "livemode": false, "metadata": p.metadata, "next_action": null, "on_behalf_of": null,
        "payment_method": p.payment_method, "payment_method_types": ["card"],
        "receipt_email": null, "setup_future_usage": null, "shipping": null,
        "statement_descriptor": null, "statement_descriptor_suffix": null, "status": status,
        "transfer_data": null, "transfer_group": null
    })
}

/// A card error as Stripe reports it (in an error response and as
/// `last_payment_error`).
pub fn card_error(code: &str, message: &str, payment_method: Option<&str>) -> Value {
    json!({
        "type": "card_error", "code": "card_declined", "decline_code": code,
        "message": message, "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "param": null, "payment_method_type": "card",
        "charge": null, "payment_method_id": payment_method
    })
}

pub fn setup_intent(
    id: &str,
    customer: Option<&str>,
    payment_method: &str,
    metadata: &Value,
    created: i64,
) -> Value {
    json!({
        "id": id, "object": "setup_intent", "application": null, "automatic_payment_methods": null,
        "cancellation_reason": null, "client_secret": format!("{id}_secret_sim"),
        "created": created, "customer": customer, "description": null, "flow_directions": null,
        "last_setup_error": null, "latest_attempt": null, "livemode": false, "mandate": null,
        "metadata": metadata, "next_action": null, "on_behalf_of": null,
        "payment_method": payment_method, "payment_method_types": ["card"],
        "single_use_mandate": null, "status": "succeeded", "usage": "off_session"
    })
}

pub fn charge(id: &str, intent: &IntentParts<'_>, created: i64) -> Value {
    json!({
        "id": id, "object": "charge", "amount": intent.amount, "amount_captured": intent.amount,
        "amount_refunded": 0, "application": null, "balance_transaction": null,
        "billing_details": {"address": null, "email": null, "name": null, "phone": null, "tax_id": null},
        "captured": true, "created": created, "currency": "usd", "customer": intent.customer,
        "description": intent.description, "disputed": false, "failure_code": null,
        "failure_message": null, "livemode": false, "metadata": intent.metadata,
        "paid": true, "payment_intent": intent.id, "payment_method": intent.payment_method,
        "receipt_url": null, "refunded": false, "status": "succeeded"
    })
}

pub fn refund(
    id: &str,
    charge: &str,
    payment_intent: Option<&str>,
    amount: i64,
    created: i64,
) -> Value {
    json!({
        "id": id, "object": "refund", "amount": amount, "balance_transaction": null,
        "charge": charge, "created": created, "currency": "usd", "metadata": {},
        "payment_intent": payment_intent, "reason": null, "receipt_number": null,
        "source_transfer_reversal": null, "status": "succeeded", "transfer_reversal": null
    })
}

pub fn dispute(
    id: &str,
    charge: &str,
    payment_intent: Option<&str>,
    amount: i64,
    created: i64,
) -> Value {
    json!({
        "id": id, "object": "dispute", "amount": amount, "balance_transactions": [],
        "charge": charge, "created": created, "currency": "usd",
        "enhanced_eligibility_types": [],
        "evidence": {"enhanced_evidence": {}},
        "evidence_details": {"due_by": created + 7 * 86400, "enhanced_eligibility": {},
                             "has_evidence": false, "past_due": false, "submission_count": 0},
        "is_charge_refundable": false, "livemode": false, "metadata": {},
        "payment_intent": payment_intent, "reason": "fraudulent", "status": "needs_response"
    })
}

/// A page of a list, newest first, as Stripe pages lists.
pub fn list(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({"object": "list", "data": data, "has_more": has_more, "url": url})
}
