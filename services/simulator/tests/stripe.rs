//! The simulated Stripe, spoken to by the `async-stripe` client (which
//! parses every object into Stripe's full types, so a missing or mistyped
//! field fails here) and by a browser-like client on the hosted Checkout
//! page; its webhooks received by a local endpoint and checked as a real
//! endpoint checks them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use money::Cents;
use payments::stripe::{Charged, Stripe, StripeConfig};
use payments::webhook::{Notice, StripeEvent};
use payments::Deposit;
use test_support::Harness;

const SECRET: &str = "whsec_simulated_endpoint_secret";

type Received = Arc<Mutex<Vec<(Vec<u8>, String)>>>;

/// A webhook endpoint that keeps every delivery (body, signature).
async fn endpoint(h: &Harness) -> Received {
    let received: Received = Arc::default();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                let signature = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                kept.lock().unwrap().push((body.to_vec(), signature));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let registered = h
        .http
        .post(format!("{}/_sim/stripe/webhook_endpoints", h.sim_url))
        .json(&serde_json::json!({"url": url, "secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    received
}

fn client(h: &Harness) -> Stripe {
    Stripe::new(&StripeConfig {
        secret_key: Some(simulator::stripe::SECRET_KEY.into()),
        webhook_secrets: vec![SECRET.into()],
        api_base: Some(format!("{}/stripe", h.sim_url)),
    })
    .unwrap()
}

/// The notices of `kind` received so far, each checked against its signature.
fn notices(received: &Received, kind: &str) -> Vec<Notice> {
    let now = chrono::Utc::now().timestamp();
    received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(body, signature)| {
            payments::signature::verify(body, Some(signature), &[SECRET.into()], now)
                .expect("a valid signature");
            let event = StripeEvent::parse(body).unwrap();
            (event.kind == kind).then(|| event.notice().unwrap())
        })
        .collect()
}

async fn wait_for(received: &Received, kind: &str, count: usize) -> Vec<Notice> {
    for _ in 0..500 {
        let found = notices(received, kind);
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {count} `{kind}` events arrived");
}

/// A browser on the hosted page: types `card` and submits.
async fn pay(h: &Harness, url: &str, card: &str) -> (u16, String, Option<String>) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser
        .post(url)
        .form(&[("card", card)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = h;
    (status, response.text().await.unwrap(), location)
}

#[tokio::test]
async fn a_deposit_pays_at_checkout_and_the_signed_webhook_says_so() {
    let h = Harness::start().await;
    let received = endpoint(&h).await;
    let stripe = client(&h);
    let customer = stripe
        .create_customer("acct-1", "ada@example.com")
        .await
        .unwrap();
    let deposit = Deposit::of(Cents(1000));
    let checkout = stripe
        .checkout_deposit(
            &customer,
            "acct-1",
            deposit,
            "http://app/billing?ok=1",
            "http://app/billing",
        )
        .await
        .unwrap();
    let page = reqwest::get(&checkout.url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Pay $10.40") && page.contains("Deposit fee (4%)"),
        "{page}"
    );
    let (status, declined, _) = pay(&h, &checkout.url, "4000 0000 0000 0002").await;
    assert_eq!(status, 402);
    assert!(declined.contains("Your card was declined."));
    let (status, _, location) = pay(&h, &checkout.url, "4242 4242 4242 4242").await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("http://app/billing?ok=1"))
    );
    let paid = wait_for(&received, "checkout.session.completed", 1).await;
    let Notice::DepositPaid {
        session,
        payment_intent,
        account,
        credits,
        fee,
        amount_total,
    } = &paid[0]
    else {
        panic!("{paid:?}")
    };
    assert_eq!(
        (session.as_str(), account.as_str()),
        (checkout.session.as_str(), "acct-1")
    );
    assert_eq!(
        (*credits, *fee, *amount_total),
        (Cents(1000), Cents(40), Cents(1040))
    );
    // The page is closed now, and the payment is listed.
    assert_eq!(pay(&h, &checkout.url, "4242424242424242").await.0, 410);
    let intents = stripe.paid_intents().await.unwrap();
    assert!(intents
        .iter()
        .any(|i| &i.id == payment_intent && i.amount == Cents(1040)));
    assert_eq!(
        intents
            .iter()
            .find(|i| &i.id == payment_intent)
            .unwrap()
            .metadata["account"],
        "acct-1"
    );
}

#[tokio::test]
async fn a_saved_card_is_charged_off_session_once_per_key_or_declined() {
    let h = Harness::start().await;
    let received = endpoint(&h).await;
    let stripe = client(&h);
    let save = |card: &'static str| {
        let (h, stripe, received) = (&h, &stripe, &received);
        async move {
            let customer = stripe
                .create_customer("acct-2", "bo@example.com")
                .await
                .unwrap();
            let before = notices(received, "checkout.session.completed").len();
            let checkout = stripe
                .checkout_setup(
                    &customer,
                    "acct-2",
                    "http://app/billing",
                    "http://app/billing",
                )
                .await
                .unwrap();
            assert_eq!(pay(h, &checkout.url, card).await.0, 303);
            let saved = wait_for(received, "checkout.session.completed", before + 1).await;
            let Notice::CardSaved {
                customer: saved_for,
                setup_intent,
                ..
            } = saved[before].clone()
            else {
                panic!("{saved:?}")
            };
            assert_eq!(saved_for, customer);
            (customer, stripe.saved_card(&setup_intent).await.unwrap())
        }
    };
    let (customer, card) = save("4242424242424242").await;
    assert_eq!((card.brand.as_str(), card.last4.as_str()), ("visa", "4242"));
    let deposit = Deposit::of(Cents(2000));
    let tags = [("kind", "recharge".to_owned())];
    let first = stripe
        .charge_off_session(
            &customer,
            &card.payment_method,
            deposit,
            "mr-recharge-1",
            &tags,
        )
        .await
        .unwrap();
    let again = stripe
        .charge_off_session(
            &customer,
            &card.payment_method,
            deposit,
            "mr-recharge-1",
            &tags,
        )
        .await
        .unwrap();
    assert_eq!(first, again, "one key, one charge");
    let Charged::Succeeded { payment_intent } = first else {
        panic!("{first:?}")
    };
    let charged: Vec<_> = stripe
        .paid_intents()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.metadata.get("kind").map(String::as_str) == Some("recharge"))
        .collect();
    assert_eq!(charged.len(), 1);
    assert_eq!(
        (charged[0].id.as_str(), charged[0].amount),
        (payment_intent.as_str(), Cents(2080))
    );
    let paid = wait_for(&received, "payment_intent.succeeded", 1).await;
    assert!(
        matches!(
            &paid[0],
            Notice::RechargePaid {
                amount: Cents(2080),
                ..
            }
        ),
        "{paid:?}"
    );

    // A card that saves but declines later charges.
    let (customer, card) = save("4000000000000341").await;
    let declined = stripe
        .charge_off_session(
            &customer,
            &card.payment_method,
            deposit,
            "mr-recharge-2",
            &tags,
        )
        .await
        .unwrap();
    let Charged::Declined {
        code,
        payment_intent: Some(_),
        ..
    } = &declined
    else {
        panic!("{declined:?}")
    };
    assert_eq!(code, "generic_decline");
    let failed = wait_for(&received, "payment_intent.payment_failed", 1).await;
    assert!(matches!(&failed[0], Notice::RechargeFailed { code, .. } if code == "generic_decline"));
    // Detached, the card can no longer be charged.
    stripe.forget_card(&card.payment_method).await.unwrap();
    assert!(stripe
        .charge_off_session(
            &customer,
            &card.payment_method,
            deposit,
            "mr-recharge-3",
            &tags
        )
        .await
        .is_err());
}

#[tokio::test]
async fn refunds_and_disputes_arrive_as_their_events() {
    let h = Harness::start().await;
    let received = endpoint(&h).await;
    let stripe = client(&h);
    let customer = stripe
        .create_customer("acct-3", "cy@example.com")
        .await
        .unwrap();
    let checkout = stripe
        .checkout_deposit(
            &customer,
            "acct-3",
            Deposit::of(Cents(1000)),
            "http://app/ok",
            "http://app/no",
        )
        .await
        .unwrap();
    pay(&h, &checkout.url, "4242424242424242").await;
    let paid = wait_for(&received, "checkout.session.completed", 1).await;
    let Notice::DepositPaid { payment_intent, .. } = &paid[0] else {
        panic!()
    };
    let refund = |amount: &str| {
        let (h, payment_intent) = (&h, payment_intent.clone());
        let amount = amount.to_owned();
        async move {
            h.http
                .post(format!("{}/stripe/v1/refunds", h.sim_url))
                .bearer_auth(simulator::stripe::SECRET_KEY)
                .form(&[
                    ("payment_intent", payment_intent.as_str()),
                    ("amount", amount.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(refund("500").await.status(), 200);
    assert_eq!(refund("9999").await.status(), 400, "more than is left");
    let refunded = wait_for(&received, "charge.refunded", 1).await;
    assert!(
        matches!(
            &refunded[0],
            Notice::Refunded {
                refunded: Cents(500),
                before: Cents(0),
                ..
            }
        ),
        "{refunded:?}"
    );
    assert_eq!(stripe.refunds().await.unwrap()[0].amount, Cents(500));
    let opened: serde_json::Value = h
        .http
        .post(format!("{}/_sim/stripe/disputes", h.sim_url))
        .json(&serde_json::json!({"payment_intent": payment_intent}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dispute = opened["id"].as_str().unwrap().to_owned();
    let created = wait_for(&received, "charge.dispute.created", 1).await;
    assert!(matches!(
        &created[0],
        Notice::DisputeOpened {
            amount: Cents(1040),
            ..
        }
    ));
    h.http
        .post(format!(
            "{}/_sim/stripe/disputes/{dispute}/close",
            h.sim_url
        ))
        .json(&serde_json::json!({"status": "won"}))
        .send()
        .await
        .unwrap();
    let closed = wait_for(&received, "charge.dispute.closed", 1).await;
    assert!(matches!(
        &closed[0],
        Notice::DisputeClosed { won: true, .. }
    ));
    let disputes = stripe.disputes().await.unwrap();
    assert_eq!(
        (disputes[0].id.as_str(), disputes[0].status.as_str()),
        (dispute.as_str(), "won")
    );
    // The wrong key is refused as Stripe refuses it.
    let wrong = Stripe::new(&StripeConfig {
        secret_key: Some("sk_test_wrong".into()),
        webhook_secrets: Vec::new(),
        api_base: Some(format!("{}/stripe", h.sim_url)),
    })
    .unwrap();
    assert!(wrong
        .create_customer("a", "a@b.c")
        .await
        .unwrap_err()
        .to_string()
        .contains("401"));
}
