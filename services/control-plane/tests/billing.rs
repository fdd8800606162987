//! Money in, against a whole stack and the simulator's Stripe: deposits paid
//! on the hosted Checkout page, the fee, refunds and disputes, auto-recharge
//! charging a saved card once per crossing and giving up after three
//! declines; and the webhook endpoint under attack: unsigned, stale,
//! tampered, replayed, duplicated and out-of-order deliveries.

use std::time::Duration;

use control_plane::ControlPlaneConfig;
use money::Money;
use reqwest::Method;
use serde_json::{json, Value};
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Browser, Stack, WEBHOOK_SECRET};
use test_support::eventually;

const PAYS: &str = "4242 4242 4242 4242";
const SAVES_THEN_DECLINES: &str = "4000 0000 0000 0341";
const DECLINED: &str = "4000 0000 0000 0002";

/// No demo credits: every cent comes from a payment.
fn paying_config() -> ControlPlaneConfig {
    ControlPlaneConfig {
        demo_credits: None,
        ..fast_config()
    }
}

/// The simulated Stripe's API base, as the stack's clients are given it.
fn stripe_base(stack: &Stack) -> String {
    format!("{}/stripe", stack.gateway.sim_url)
}

async fn stripe_stack() -> Stack {
    Stack::start_with_stripe(Backends::embedded().await, paying_config()).await
}

fn usd(text: &str) -> Money {
    text.parse().expect("an amount")
}

async fn owner(stack: &Stack, email: &str) -> Browser {
    let browser = stack.browser();
    browser.sign_up(email, "Paying").await;
    browser
}

async fn balance(browser: &Browser) -> Money {
    let (status, credits) = browser.api(Method::GET, "/api/v1/credits", None).await;
    assert_eq!(status, 200, "{credits}");
    usd(credits["balance"].as_str().expect("balance"))
}

async fn wait_for_balance(browser: &Browser, expected: Money) {
    let reached = eventually(Duration::from_secs(20), async || {
        balance(browser).await == expected
    })
    .await;
    assert!(
        reached,
        "balance stayed {} (expected {expected})",
        balance(browser).await
    );
}

/// Deposits `amount` paid with `card`; the PaymentIntent id.
async fn deposit(stack: &Stack, browser: &Browser, amount: &str, card: &str) -> String {
    let session = browser.deposit(amount, card).await;
    let session =
        test_support::stripe::get(&stripe_base(stack), &format!("checkout/sessions/{session}"))
            .await;
    session["payment_intent"]
        .as_str()
        .expect("a paid session has its PaymentIntent")
        .to_owned()
}

/// Every webhook delivery the simulator attempted, oldest first.
async fn deliveries(stack: &Stack) -> Vec<Value> {
    reqwest::get(format!("{}/_sim/stripe/deliveries", stack.gateway.sim_url))
        .await
        .expect("simulator reachable")
        .json()
        .await
        .expect("json")
}

/// Posts `payload` to the stack's webhook endpoint signed with `secret` at `at`.
async fn send_webhook(stack: &Stack, payload: &str, signature: Option<String>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/stripe/webhook", stack.url))
        .header("content-type", "application/json")
        .body(payload.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.send().await.expect("reachable").status().as_u16()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn signed(payload: &str) -> Option<String> {
    Some(payments::signature::sign(
        payload.as_bytes(),
        WEBHOOK_SECRET,
        now(),
    ))
}

/// Deliveries of `kind` the endpoint took, their payloads.
async fn taken(stack: &Stack, kind: &str) -> Vec<String> {
    let mut payloads: Vec<String> = deliveries(stack)
        .await
        .into_iter()
        .filter(|d| d["type"] == kind && d["status"] == 200)
        .map(|d| d["payload"].as_str().unwrap_or_default().to_owned())
        .collect();
    payloads.dedup();
    payloads
}

async fn wait_taken(stack: &Stack, kind: &str, count: usize) -> Vec<String> {
    let mut found = Vec::new();
    let ok = eventually(Duration::from_secs(20), async || {
        found = taken(stack, kind).await;
        found.len() >= count
    })
    .await;
    assert!(ok, "{kind}: {} of {count} deliveries taken", found.len());
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deposit_paid_at_checkout_adds_its_credits_and_books_the_fee() {
    let stack = stripe_stack().await;
    let alice = owner(&stack, "alice@example.com").await;
    assert_eq!(balance(&alice).await, Money::ZERO);

    // The dashboard shows the fee and the total before sending the owner to pay.
    let review = alice.post("/billing/deposit", &[("amount", "10")]).await;
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(review.body.contains("id=\"fee\">$0.40"), "{}", review.body);
    assert!(review.body.contains("id=\"total\"><b>$10.40"));
    let pay = alice
        .post("/billing/deposit/pay", &[("amount", "10")])
        .await;
    assert_eq!(pay.status, 303);
    let checkout = pay.location.expect("to Checkout");
    let hosted = reqwest::get(&checkout).await.unwrap().text().await.unwrap();
    assert!(hosted.contains("Pay $10.40"), "{hosted}");

    // A declined card pays nothing and leaves the page open.
    assert_eq!(test_support::stripe::pay(&checkout, DECLINED).await, 402);
    assert_eq!(test_support::stripe::pay(&checkout, PAYS).await, 303);
    wait_for_balance(&alice, usd("10")).await;

    let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
    let history = billing["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{billing}");
    assert_eq!(history[0]["kind"], "deposit");
    assert_eq!(history[0]["credits"], "10");
    assert_eq!(history[0]["fee"], "0.4");
    assert_eq!(history[0]["balance"], "10");

    let page = alice.get("/billing").await;
    assert!(page.body.contains("id=\"balance\">$10.00"), "{}", page.body);

    // The journal says where the $10.40 went, to the cent.
    let today = chrono::Utc::now().date_naive();
    let csv = alice
        .get(&format!("/billing/journal.csv?from={today}&to={today}"))
        .await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "at,event_id,line,book,account,debit,credit,memo");
    let booked = |book: &str| {
        lines
            .iter()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split(',').collect();
                (cols[3] == book).then(|| format!("{}/{}", cols[5], cols[6]))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(booked("cash"), ["10.4/0"], "{}", csv.body);
    assert_eq!(booked("customer_credits"), ["0/10"]);
    assert_eq!(booked("fee_revenue"), ["0/0.4"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deposits_outside_the_rules_are_refused_before_stripe_is_called() {
    let stack = stripe_stack().await;
    let alice = owner(&stack, "alice@example.com").await;
    for amount in [
        "abc", "4.99", "10000.01", "10.001", "-5", "", "1e3", "10,00",
    ] {
        let (status, refused) = alice
            .api(
                Method::POST,
                "/api/v1/billing/deposits",
                Some(json!({ "amount": amount })),
            )
            .await;
        assert_eq!(status, 400, "{amount}: {refused}");
        assert_eq!(
            refused["error"]["type"], "invalid_request_error",
            "{refused}"
        );
        let page = alice.post("/billing/deposit", &[("amount", amount)]).await;
        assert_eq!(page.status, 400, "{amount}");
        assert!(page.body.contains("class=\"error\""), "{}", page.body);
    }
    let (status, _) = alice
        .api(
            Method::POST,
            "/api/v1/billing/deposits",
            Some(json!({"amount": 10, "x": 1})),
        )
        .await;
    assert_eq!(status, 400);
    // Nothing reached Stripe: no Checkout Session was made.
    let sessions = test_support::stripe::get(&stripe_base(&stack), "checkout/sessions").await;
    assert_eq!(
        sessions["data"].as_array().map(Vec::len),
        Some(0),
        "{sessions}"
    );

    // Members do not handle money.
    let (_, invited) = alice
        .api(
            Method::POST,
            "/api/v1/invitations",
            Some(json!({"email": "bob@example.com", "role": "member"})),
        )
        .await;
    let bob = stack.browser();
    let path = invited["invitation_path"].as_str().unwrap();
    bob.post(
        &format!("{path}/signup"),
        &[("password", test_support::dashboard::PASSWORD)],
    )
    .await;
    let (status, _) = bob
        .api(
            Method::POST,
            "/api/v1/billing/deposits",
            Some(json!({"amount": "10"})),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(bob.get("/billing").await.status, 403);
    let (status, _) = bob
        .api(
            Method::GET,
            "/api/v1/billing/journal.csv?from=2026-01-01&to=2026-01-02",
            None,
        )
        .await;
    assert_eq!(status, 403);
    // They may still see the balance their requests draw on.
    let (status, _) = bob.api(Method::GET, "/api/v1/credits", None).await;
    assert_eq!(status, 200);

    // Bad ranges for the CSV are explained.
    let bad = alice
        .get("/billing/journal.csv?from=2026-02-01&to=2026-01-01")
        .await;
    assert_eq!(bad.status, 400);
    let bad = alice
        .get("/billing/journal.csv?from=yesterday&to=2026-01-01")
        .await;
    assert_eq!(bad.status, 400);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stripe_deposits_say_so() {
    let stack = Stack::start(Backends::embedded().await, paying_config()).await;
    let alice = owner(&stack, "alice@example.com").await;
    let (status, refused) = alice
        .api(
            Method::POST,
            "/api/v1/billing/deposits",
            Some(json!({"amount": "10"})),
        )
        .await;
    assert_eq!(status, 503, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not configured"));
    let page = alice.get("/billing").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Card payments are not configured"));
    assert_eq!(send_webhook(&stack, "{}", signed("{}")).await, 503);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_credits_endpoint_answers_an_accounts_own_api_key() {
    let stack = stripe_stack().await;
    let alice = owner(&stack, "alice@example.com").await;
    deposit(&stack, &alice, "12.50", PAYS).await;
    wait_for_balance(&alice, usd("12.5")).await;
    let key = alice.create_key("ci").await;
    let carol = owner(&stack, "carol@example.com").await;
    let carol_key = carol.create_key("ci").await;
    let credits = |key: String| {
        let url = format!("{}/api/v1/credits", stack.url);
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, mine) = credits(key.clone()).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["balance"], "12.5");
    let (_, hers) = credits(carol_key).await;
    assert_eq!(hers["balance"], "0");
    let (status, refused) = credits(format!("{key}x")).await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"]["code"], "unauthenticated");
    // An ordinary key opens nothing else of the admin API.
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/billing", stack.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refunds_and_disputes_take_back_exactly_what_was_paid() {
    let stack = stripe_stack().await;
    let alice = owner(&stack, "alice@example.com").await;
    let intent = deposit(&stack, &alice, "10", PAYS).await;
    wait_for_balance(&alice, usd("10")).await;

    // Half the $10.40 back: $5 of credits and $0.20 of fee.
    let refund = |amount: Option<i64>| {
        let url = format!("{}/stripe/v1/refunds", stack.gateway.sim_url);
        let mut form = vec![("payment_intent".to_owned(), intent.clone())];
        if let Some(amount) = amount {
            form.push(("amount".into(), amount.to_string()));
        }
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(simulator::stripe::SECRET_KEY)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(refund(Some(520)).await, 200);
    wait_for_balance(&alice, usd("5")).await;
    // An odd cent splits so that the parts of all steps add up to the whole.
    assert_eq!(refund(Some(1)).await, 200);
    assert_eq!(refund(None).await, 200);
    wait_for_balance(&alice, Money::ZERO).await;
    let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
    let history = billing["history"].as_array().unwrap();
    let refunds: Vec<&Value> = history.iter().filter(|h| h["kind"] == "refund").collect();
    assert_eq!(refunds.len(), 3, "{billing}");
    let fees: Money = refunds
        .iter()
        .fold(Money::ZERO, |sum, h| sum + usd(h["fee"].as_str().unwrap()));
    assert_eq!(fees, usd("-0.4"), "the whole fee went back over the steps");

    // A second deposit, spent, then disputed: the balance may go negative.
    let second = deposit(&stack, &alice, "20", PAYS).await;
    wait_for_balance(&alice, usd("20")).await;
    let key = alice.create_key("spend").await;
    let chat = stack.chat(&key, "premium").await;
    assert_eq!(chat.status(), 200);
    let after_spend = {
        let mut seen = usd("20");
        eventually(Duration::from_secs(20), async || {
            seen = balance(&alice).await;
            seen < usd("20")
        })
        .await;
        seen
    };
    let dispute: Value = reqwest::Client::new()
        .post(format!("{}/_sim/stripe/disputes", stack.gateway.sim_url))
        .json(&json!({"payment_intent": second}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    wait_for_balance(&alice, after_spend - usd("20")).await;
    assert!(balance(&alice).await < Money::ZERO);
    // A negative balance stops spending once the gateway has the ledger's
    // new account state: it follows the states the ledger puts after its
    // commit, which the balance above already reads.
    let account = alice.account().await;
    let negative = stack
        .gateway
        .gateway
        .events
        .as_ref()
        .expect("the stack's gateway records usage")
        .accounts
        .wait_for(account, Duration::from_secs(5), |s| s.balance < Money::ZERO)
        .await;
    assert!(negative, "the gateway never had the negative balance");
    // Free models still serve.
    let refused = stack.chat(&key, "premium").await;
    assert_eq!(refused.status(), 402);
    assert_eq!(stack.chat(&key, "llama3.1-8b").await.status(), 200);
    // Won: the credits and fee come back.
    let closed = reqwest::Client::new()
        .post(format!(
            "{}/_sim/stripe/disputes/{}/close",
            stack.gateway.sim_url,
            dispute["id"].as_str().unwrap()
        ))
        .json(&json!({"status": "won"}))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    wait_for_balance(&alice, after_spend).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_that_stripe_did_not_sign_now_change_nothing() {
    // Stack A takes a real deposit; stack B (another deployment, same
    // secret) is sent that deposit's event in every wrong way first.
    let a = stripe_stack().await;
    let alice = owner(&a, "alice@example.com").await;
    deposit(&a, &alice, "10", PAYS).await;
    let payload = wait_taken(&a, "checkout.session.completed", 1)
        .await
        .remove(0);

    let b = stripe_stack().await;
    let bob = owner(&b, "bob@example.com").await;
    let bob_account = bob.account().await.to_string();
    let alice_account = alice.account().await.to_string();
    // The same payment, made out to bob's account.
    let payload = payload.replace(&alice_account, &bob_account);
    let tampered = payload.replace("\"credits_cents\":\"1000\"", "\"credits_cents\":\"100000\"");
    assert_ne!(tampered, payload, "the payload carries credits_cents");
    let wrong_secret = payments::signature::sign(payload.as_bytes(), "whsec_other", now());
    let stale = payments::signature::sign(payload.as_bytes(), WEBHOOK_SECRET, now() - 301);
    let future = payments::signature::sign(payload.as_bytes(), WEBHOOK_SECRET, now() + 301);
    let attempts: Vec<(&str, &str, Option<String>)> = vec![
        ("unsigned", &payload, None),
        ("wrong secret", &payload, Some(wrong_secret)),
        ("stale", &payload, Some(stale)),
        ("from the future", &payload, Some(future)),
        ("tampered after signing", &tampered, signed(&payload)),
        ("garbage header", &payload, Some("t=abc,v1=zz".into())),
        ("signed garbage", "not json", signed("not json")),
    ];
    let log_before = b.backends.log.last_seq().await.unwrap();
    for (what, body, signature) in attempts {
        assert_eq!(send_webhook(&b, body, signature).await, 400, "{what}");
    }
    assert_eq!(
        b.backends.log.last_seq().await.unwrap(),
        log_before,
        "nothing appended for a refused webhook"
    );
    // The genuine delivery counts, once, at its true amount.
    assert_eq!(send_webhook(&b, &payload, signed(&payload)).await, 200);
    assert_eq!(send_webhook(&b, &payload, signed(&payload)).await, 200);
    wait_for_balance(&bob, usd("10")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(balance(&bob).await, usd("10"));
    let deposits: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deposits")
        .fetch_one(&b.backends.store.pool)
        .await
        .unwrap();
    assert_eq!(deposits, 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_duplicated_and_reordered_webhooks_count_once() {
    // Stack A lives through deposits, refunds, a dispute won and one lost.
    let a = stripe_stack().await;
    let alice = owner(&a, "alice@example.com").await;
    let first = deposit(&a, &alice, "10", PAYS).await;
    let second = deposit(&a, &alice, "25", PAYS).await;
    wait_for_balance(&alice, usd("35")).await;
    let sim = a.gateway.sim_url.clone();
    let http = reqwest::Client::new();
    for amount in ["300", "17"] {
        http.post(format!("{sim}/stripe/v1/refunds"))
            .bearer_auth(simulator::stripe::SECRET_KEY)
            .form(&[("payment_intent", first.as_str()), ("amount", amount)])
            .send()
            .await
            .unwrap();
    }
    let dispute: Value = http
        .post(format!("{sim}/_sim/stripe/disputes"))
        .json(&json!({"payment_intent": second}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.post(format!(
        "{sim}/_sim/stripe/disputes/{}/close",
        dispute["id"].as_str().unwrap()
    ))
    .json(&json!({"status": "won"}))
    .send()
    .await
    .unwrap();
    let folded = eventually(Duration::from_secs(20), async || {
        let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
        let mut kinds: Vec<&str> = billing["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["kind"].as_str())
            .collect();
        // Stripe delivers concurrently: the refunds and the dispute may
        // arrive in any order.
        kinds.sort_unstable();
        kinds
            == [
                "deposit",
                "deposit",
                "dispute",
                "dispute won",
                "refund",
                "refund",
            ]
    })
    .await;
    assert!(
        folded,
        "the ledger folded every payment event: {:?}",
        alice.api(Method::GET, "/api/v1/billing", None).await.1["history"]
    );
    let settled = balance(&alice).await;
    let journal = |stack: &Stack| {
        let pool = stack.backends.store.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM journal")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let lines = journal(&a).await;

    // Every delivery again, newest first, twice over, concurrently.
    let mut all: Vec<String> = deliveries(&a)
        .await
        .into_iter()
        .filter(|d| d["status"] == 200)
        .map(|d| d["payload"].as_str().unwrap().to_owned())
        .collect();
    all.reverse();
    let replays = all
        .iter()
        .chain(all.iter())
        .map(|p| send_webhook(&a, p, signed(p)));
    for status in futures_util::future::join_all(replays).await {
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(balance(&alice).await, settled);
    assert_eq!(journal(&a).await, lines);

    // On a fresh deployment (same secret, same account id), newest first:
    // what refers to a deposit not yet folded is refused with 503 so Stripe
    // sends it again; sent again in the order Stripe retries them, the books
    // come out the same.
    let b = stripe_stack().await;
    let bob = owner(&b, "bob@example.com").await;
    let alice_account = alice.account().await.to_string();
    let bob_account = bob.account().await.to_string();
    let mut pending: Vec<String> = all
        .iter()
        .map(|p| p.replace(&alice_account, &bob_account))
        .collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 50, "{} webhooks never taken", pending.len());
        let mut refused = Vec::new();
        for payload in pending {
            match send_webhook(&b, &payload, signed(&payload)).await {
                200 => {}
                503 => refused.push(payload),
                other => panic!("{other} for {payload}"),
            }
        }
        pending = refused;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rounds >= 2, "reversals before their deposit were put off");
    wait_for_balance(&bob, settled).await;
    let (_, a_billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
    let (_, b_billing) = bob.api(Method::GET, "/api/v1/billing", None).await;
    let kinds = |b: &Value| {
        let mut k: Vec<String> = b["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{} {} {}", h["kind"], h["credits"], h["fee"]))
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&a_billing), kinds(&b_billing));
    a.stop().await;
    b.stop().await;
}

async fn set_auto_recharge(browser: &Browser, threshold: &str, amount: &str) -> (u16, Value) {
    browser
        .api(
            Method::PUT,
            "/api/v1/billing/auto-recharge",
            Some(json!({"enabled": true, "threshold": threshold, "amount": amount})),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_recharge_charges_the_card_once_per_crossing() {
    let stack = stripe_stack().await;
    let alice = owner(&stack, "alice@example.com").await;
    // On without a card is refused; so is a recharge under the minimum.
    let (status, refused) = set_auto_recharge(&alice, "10", "10").await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Save a card"));
    deposit(&stack, &alice, "10", PAYS).await;
    alice.save_card(PAYS).await;
    let (status, _) = set_auto_recharge(&alice, "10", "4").await;
    assert_eq!(status, 400);
    let (status, _) = set_auto_recharge(&alice, "-1", "10").await;
    assert_eq!(status, 400);
    let (status, set) = set_auto_recharge(&alice, "10", "10").await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["enabled"], true);
    // Read-your-writes: the next request already sees the ledger's fold.
    let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
    assert_eq!(billing["auto_recharge"]["enabled"], true, "{billing}");
    wait_for_balance(&alice, usd("10")).await;
    assert!(test_support::stripe::recharge_intents(&stripe_base(&stack))
        .await
        .is_empty());

    // Twelve requests at once take the balance under $10: one recharge.
    let key = alice.create_key("spend").await;
    let chats = (0..12).map(|_| stack.chat(&key, "premium"));
    for response in futures_util::future::join_all(chats).await {
        assert_eq!(response.status(), 200);
    }
    let recharged = eventually(Duration::from_secs(20), async || {
        balance(&alice).await > usd("19")
    })
    .await;
    assert!(recharged, "no recharge: balance {}", balance(&alice).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let intents = test_support::stripe::recharge_intents(&stripe_base(&stack)).await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["amount"], 1040, "$10 and the 4% fee");
    assert_eq!(intents[0]["status"], "succeeded");
    let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
    let kinds: Vec<&str> = billing["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "auto-recharge").count(),
        1,
        "{billing}"
    );
    assert_eq!(billing["auto_recharge"]["charging"], false);
    assert_eq!(
        kinds.last(),
        Some(&"usage"),
        "the day's usage total comes after its events"
    );
    let last = billing["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["balance"], billing["balance"],
        "the running balance ends at the balance"
    );

    // Raising the threshold over the balance: the next request recharges again, once.
    let (status, _) = set_auto_recharge(&alice, "25", "10").await;
    assert_eq!(status, 200);
    assert_eq!(stack.chat(&key, "premium").await.status(), 200);
    let again = eventually(Duration::from_secs(20), async || {
        test_support::stripe::recharge_intents(&stripe_base(&stack))
            .await
            .len()
            == 2
            && balance(&alice).await > usd("29")
    })
    .await;
    assert!(again, "second crossing did not recharge");

    // Removing the card turns auto-recharge off.
    let (status, _) = alice
        .api(Method::DELETE, "/api/v1/billing/card", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = set_auto_recharge(&alice, "100", "10").await;
    assert_eq!(status, 400);
    let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
    assert_eq!(billing["auto_recharge"]["enabled"], false, "{billing}");
    assert!(billing["auto_recharge"]["card"].is_null());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_declines_in_a_row_turn_auto_recharge_off() {
    let stack = stripe_stack().await;
    let alice = owner(&stack, "alice@example.com").await;
    deposit(&stack, &alice, "10", PAYS).await;
    alice.save_card(SAVES_THEN_DECLINES).await;
    let (status, _) = set_auto_recharge(&alice, "50", "10").await;
    assert_eq!(status, 200);
    wait_for_balance(&alice, usd("10")).await;
    let key = alice.create_key("spend").await;
    for attempt in 1..=4 {
        assert_eq!(stack.chat(&key, "premium").await.status(), 200);
        if attempt <= 3 {
            let declined = eventually(Duration::from_secs(20), async || {
                let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
                billing["auto_recharge"]["declines"] == attempt
                    && billing["auto_recharge"]["charging"] == false
            })
            .await;
            assert!(declined, "decline {attempt} not recorded");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, billing) = alice.api(Method::GET, "/api/v1/billing", None).await;
    let auto = &billing["auto_recharge"];
    assert_eq!(auto["enabled"], false, "{auto}");
    assert!(
        auto["last_decline"].as_str().unwrap().contains("declined"),
        "{auto}"
    );
    assert_eq!(
        test_support::stripe::recharge_intents(&stripe_base(&stack))
            .await
            .len(),
        3,
        "the fourth request charged nothing"
    );
    assert!(balance(&alice).await < usd("10"));
    let page = alice.get("/billing").await;
    assert!(page.body.contains("id=\"declines\""), "{}", page.body);

    // Turning it back on forgives the declines.
    let (status, set) = set_auto_recharge(&alice, "50", "10").await;
    assert_eq!(status, 200);
    assert_eq!(set["declines"], 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_the_router_did_not_make_are_acknowledged_and_left_alone() {
    // Another product on the same Stripe account sells something through
    // Checkout, then refunds it: the router answers 2xx (or Stripe would
    // retry for days) and books nothing.
    let stack = stripe_stack().await;
    let alice = owner(&stack, "alice@example.com").await;
    let sim = &stack.gateway.sim_url;
    let http = reqwest::Client::new();
    let post = |path: &str, form: Vec<(&str, &str)>| {
        http.post(format!("{sim}/stripe/v1/{path}"))
            .bearer_auth(simulator::stripe::SECRET_KEY)
            .form(&form)
            .send()
    };
    let session: Value = post(
        "checkout/sessions",
        vec![
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "2500"),
            ("line_items[0][price_data][product_data][name]", "T-shirt"),
            ("line_items[0][quantity]", "1"),
            ("success_url", "https://shop.example.com/thanks"),
            ("metadata[order]", "42"),
        ],
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        test_support::stripe::pay(session["url"].as_str().unwrap(), PAYS).await,
        303
    );
    let paid = test_support::stripe::get(
        &stripe_base(&stack),
        &format!("checkout/sessions/{}", session["id"].as_str().unwrap()),
    )
    .await;
    let intent = paid["payment_intent"].as_str().unwrap();
    let refund = post("refunds", vec![("payment_intent", intent)])
        .await
        .unwrap();
    assert_eq!(refund.status(), 200);
    let answered = eventually(Duration::from_secs(20), async || {
        let all = deliveries(&stack).await;
        all.iter().any(|d| d["type"] == "charge.refunded") && all.iter().all(|d| d["status"] == 200)
    })
    .await;
    assert!(answered, "{:#?}", deliveries(&stack).await);
    let deposits: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deposits")
        .fetch_one(&stack.backends.store.pool)
        .await
        .unwrap();
    assert_eq!(deposits, 0);
    assert_eq!(balance(&alice).await, Money::ZERO);
    stack.stop().await;
}
