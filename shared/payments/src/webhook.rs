//! Stripe's webhook events, read for what they mean to the books. Only the
//! fields used are read, so an object gaining fields in a newer Stripe API
//! version changes nothing; a known event missing a field it needs is an
//! error (Stripe retries it, and the log says why).

use std::collections::HashMap;

use money::Cents;
use serde::Deserialize;
use serde_json::Value;

/// Why a webhook body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("not a Stripe event: {0}")]
    NotAnEvent(String),
    #[error("`{kind}` event {id}: {problem}")]
    Incomplete {
        id: String,
        kind: String,
        problem: String,
    },
}

/// A Stripe event as delivered.
#[derive(Debug, Clone, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: EventData,
}

/// The object an event is about, and what changed in it.
#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: Value,
    #[serde(default)]
    pub previous_attributes: Option<Value>,
}

/// What an event means here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A deposit's Checkout Session was paid.
    DepositPaid {
        session: String,
        payment_intent: String,
        account: String,
        credits: Cents,
        fee: Cents,
        amount_total: Cents,
    },
    /// A Checkout Session in setup mode saved a card.
    CardSaved {
        session: String,
        account: String,
        customer: String,
        setup_intent: String,
    },
    /// An off-session PaymentIntent (auto-recharge) succeeded.
    RechargePaid {
        payment_intent: String,
        metadata: HashMap<String, String>,
        amount: Cents,
    },
    /// An off-session PaymentIntent (auto-recharge) failed.
    RechargeFailed {
        payment_intent: String,
        metadata: HashMap<String, String>,
        code: String,
        message: String,
    },
    /// A charge was refunded further: `refunded` in total now, `before` earlier.
    Refunded {
        charge: String,
        payment_intent: String,
        refunded: Cents,
        before: Cents,
    },
    /// A dispute was opened on a payment: its amount is withdrawn.
    DisputeOpened {
        dispute: String,
        payment_intent: String,
        amount: Cents,
    },
    /// A dispute was closed: `won` returns its amount.
    DisputeClosed {
        dispute: String,
        payment_intent: String,
        amount: Cents,
        won: bool,
    },
    /// Nothing to do (another type, or a state that needs none, such as a
    /// Checkout Session still awaiting an asynchronous payment).
    Ignored,
}

impl StripeEvent {
    /// Reads an event body.
    pub fn parse(payload: &[u8]) -> Result<StripeEvent, WebhookError> {
        serde_json::from_slice(payload).map_err(|e| WebhookError::NotAnEvent(e.to_string()))
    }

    fn incomplete(&self, problem: impl Into<String>) -> WebhookError {
        WebhookError::Incomplete {
            id: self.id.clone(),
            kind: self.kind.clone(),
            problem: problem.into(),
        }
    }

    fn text(&self, field: &str) -> Result<String, WebhookError> {
        self.data.object[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.incomplete(format!("no `{field}`")))
    }

    /// An id field that may be expanded into its object.
    fn id_of(&self, field: &str) -> Result<String, WebhookError> {
        let value = &self.data.object[field];
        value
            .as_str()
            .or_else(|| value["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| self.incomplete(format!("no `{field}`")))
    }

    fn cents(&self, value: &Value, field: &str) -> Result<Cents, WebhookError> {
        value[field]
            .as_i64()
            .map(Cents)
            .ok_or_else(|| self.incomplete(format!("no `{field}`")))
    }

    fn metadata(&self) -> HashMap<String, String> {
        self.data.object["metadata"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the event means here.
    pub fn notice(&self) -> Result<Notice, WebhookError> {
        let object = &self.data.object;
        match self.kind.as_str() {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                // Sessions the router did not make (other products on the
                // same Stripe account) are acknowledged and left alone.
                let ours = matches!(
                    object["metadata"]["kind"].as_str(),
                    Some("deposit" | "save_card")
                );
                if !ours {
                    return Ok(Notice::Ignored);
                }
                match object["mode"].as_str() {
                    Some("payment") => self.deposit_paid(),
                    Some("setup") if self.kind == "checkout.session.completed" => {
                        Ok(Notice::CardSaved {
                            session: self.text("id")?,
                            account: self.account()?,
                            customer: self.id_of("customer")?,
                            setup_intent: self.id_of("setup_intent")?,
                        })
                    }
                    _ => Ok(Notice::Ignored),
                }
            }
            "payment_intent.succeeded" | "payment_intent.payment_failed" => {
                let metadata = self.metadata();
                if metadata.get("kind").map(String::as_str) != Some("recharge") {
                    // Deposits settle from their Checkout Session.
                    return Ok(Notice::Ignored);
                }
                let payment_intent = self.text("id")?;
                if self.kind == "payment_intent.succeeded" {
                    return Ok(Notice::RechargePaid {
                        payment_intent,
                        amount: self.cents(object, "amount")?,
                        metadata,
                    });
                }
                let error = &object["last_payment_error"];
                Ok(Notice::RechargeFailed {
                    payment_intent,
                    metadata,
                    code: error["decline_code"]
                        .as_str()
                        .or_else(|| error["code"].as_str())
                        .unwrap_or("payment_failed")
                        .to_owned(),
                    message: error["message"]
                        .as_str()
                        .unwrap_or("the payment failed")
                        .to_owned(),
                })
            }
            "charge.refunded" => {
                let before = self
                    .data
                    .previous_attributes
                    .as_ref()
                    .and_then(|p| p["amount_refunded"].as_i64())
                    .map(Cents)
                    .ok_or_else(|| self.incomplete("no previous `amount_refunded`"))?;
                Ok(Notice::Refunded {
                    charge: self.text("id")?,
                    payment_intent: self.id_of("payment_intent")?,
                    refunded: self.cents(object, "amount_refunded")?,
                    before,
                })
            }
            "charge.dispute.created" => Ok(Notice::DisputeOpened {
                dispute: self.text("id")?,
                payment_intent: self.id_of("payment_intent")?,
                amount: self.cents(object, "amount")?,
            }),
            "charge.dispute.closed" => Ok(Notice::DisputeClosed {
                dispute: self.text("id")?,
                payment_intent: self.id_of("payment_intent")?,
                amount: self.cents(object, "amount")?,
                won: object["status"].as_str() == Some("won"),
            }),
            _ => Ok(Notice::Ignored),
        }
    }

    fn account(&self) -> Result<String, WebhookError> {
        let object = &self.data.object;
        object["metadata"]["account"]
            .as_str()
            .or_else(|| object["client_reference_id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| self.incomplete("no account in `metadata` or `client_reference_id`"))
    }

    /// A paid deposit session: the amounts from our metadata, checked
    /// against what was charged.
    fn deposit_paid(&self) -> Result<Notice, WebhookError> {
        let object = &self.data.object;
        if object["payment_status"].as_str() != Some("paid") {
            return Ok(Notice::Ignored);
        }
        let tag = |name: &str| -> Result<Cents, WebhookError> {
            object["metadata"][name]
                .as_str()
                .and_then(|v| v.parse().ok())
                .map(Cents)
                .ok_or_else(|| self.incomplete(format!("no `metadata.{name}`")))
        };
        let (credits, fee) = (tag("credits_cents")?, tag("fee_cents")?);
        let amount_total = self.cents(object, "amount_total")?;
        if amount_total.0 != credits.0 + fee.0 {
            return Err(self.incomplete(format!(
                "charged {amount_total} for {credits} of credits and {fee} of fee"
            )));
        }
        if object["currency"].as_str() != Some("usd") {
            return Err(self.incomplete("not charged in USD"));
        }
        Ok(Notice::DepositPaid {
            session: self.text("id")?,
            payment_intent: self.id_of("payment_intent")?,
            account: self.account()?,
            credits,
            fee,
            amount_total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, object: Value, previous: Option<Value>) -> StripeEvent {
        let mut body = json!({"id": "evt_1", "object": "event", "type": kind, "created": 1,
                              "data": {"object": object}});
        if let Some(previous) = previous {
            body["data"]["previous_attributes"] = previous;
        }
        StripeEvent::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_paid_deposit_session_reads_its_amounts_and_refuses_mismatches() {
        let session = json!({"id": "cs_1", "object": "checkout.session", "mode": "payment",
            "payment_status": "paid", "payment_intent": "pi_1", "amount_total": 1040, "currency": "usd",
            "client_reference_id": "acct", "metadata": {"account": "acct", "kind": "deposit", "credits_cents": "1000", "fee_cents": "40"}});
        assert_eq!(
            event("checkout.session.completed", session.clone(), None).notice(),
            Ok(Notice::DepositPaid {
                session: "cs_1".into(),
                payment_intent: "pi_1".into(),
                account: "acct".into(),
                credits: Cents(1000),
                fee: Cents(40),
                amount_total: Cents(1040),
            })
        );
        let mut unpaid = session.clone();
        unpaid["payment_status"] = json!("unpaid");
        assert_eq!(
            event("checkout.session.completed", unpaid, None).notice(),
            Ok(Notice::Ignored)
        );
        let mut foreign = session.clone();
        foreign["metadata"] = json!({"order": "42"});
        assert_eq!(
            event("checkout.session.completed", foreign, None).notice(),
            Ok(Notice::Ignored),
            "a session another product made is not a deposit"
        );
        let mut short = session;
        short["amount_total"] = json!(1000);
        assert!(event("checkout.session.completed", short, None)
            .notice()
            .is_err());
    }

    #[test]
    fn refunds_read_the_previous_total_and_unknown_types_are_ignored() {
        let charge = json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_1",
                            "amount": 1040, "amount_refunded": 500});
        assert_eq!(
            event(
                "charge.refunded",
                charge.clone(),
                Some(json!({"amount_refunded": 200}))
            )
            .notice(),
            Ok(Notice::Refunded {
                charge: "ch_1".into(),
                payment_intent: "pi_1".into(),
                refunded: Cents(500),
                before: Cents(200),
            })
        );
        assert!(event("charge.refunded", charge, None).notice().is_err());
        assert_eq!(
            event("customer.created", json!({"id": "cus_1"}), None).notice(),
            Ok(Notice::Ignored)
        );
        assert!(StripeEvent::parse(b"not json").is_err());
    }
}
