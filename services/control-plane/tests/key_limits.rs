//! A key's own limits, set by an owner on the admin API and the `/keys`
//! page, reach the gateway through the `keys` bucket and are enforced
//! there: allowed tiers (403 `model_not_allowed`), requests and tokens per
//! minute (429 with `Retry-After`), expiry (401 `key_expired`).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Browser, Stack};

/// The status, error code and `Retry-After` of a chat request for `model`.
async fn call(stack: &Stack, key: &str, model: &str) -> (u16, String, Option<String>) {
    let r = stack.chat(key, model).await;
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code, retry)
}

/// Sends requests until one answers with `code` (limits reach the gateway a
/// moment after they are saved); that answer.
async fn until_code(
    stack: &Stack,
    key: &str,
    model: &str,
    code: &str,
) -> (u16, String, Option<String>) {
    until(stack, key, model, |answer| answer.1 == code).await
}

/// Sends requests until an answer satisfies `wanted`; that answer. For a
/// change that keeps the error code but not the status (a daily budget
/// replaced by a lifetime one), wait on both: the old limit's answer
/// carries the same code until the gateway learns the new one.
async fn until(
    stack: &Stack,
    key: &str,
    model: &str,
    wanted: impl Fn(&(u16, String, Option<String>)) -> bool,
) -> (u16, String, Option<String>) {
    let mut last = (0, String::new(), None);
    for _ in 0..200 {
        last = call(stack, key, model).await;
        if wanted(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never answered as wanted: {last:?}");
}

async fn set(b: &Browser, id: &str, limits: Value) -> (u16, Value) {
    b.api(
        Method::PUT,
        &format!("/api/v1/keys/{id}/limits"),
        Some(limits),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn key_limits_are_checked_saved_and_enforced_on_the_gateway() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let b = stack.browser();
    b.sign_up("keys@example.com", "Key Owners").await;
    let key = b.create_key("limited").await;
    let (_, keys) = b.api(Method::GET, "/api/v1/keys", None).await;
    let id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    // The sign-up credits reach the gateway a moment after sign-up.
    assert_eq!(until_code(&stack, &key, "premium", "").await.0, 200);

    // Bad limits name their field.
    for (limits, param) in [
        (json!({"rpm": 0}), "rpm"),
        (json!({"tpm": "lots"}), "tpm"),
        (json!({"allowed": ["gold"]}), "allowed"),
        (json!({"allowed": "economy, nonsense-model"}), "allowed"),
        (json!({"expires_at": "soon"}), "expires_at"),
    ] {
        let (status, error) = set(&b, &id, limits.clone()).await;
        assert_eq!(status, 400, "{limits}: {error}");
        assert_eq!(error["error"]["param"], param, "{limits}: {error}");
    }
    let (status, _) = set(&b, &id, json!({"colour": "red"})).await;
    assert_eq!(status, 400);
    let (status, _) = set(&b, "000000000000", json!({"rpm": 5})).await;
    assert_eq!(status, 404);

    // Allowed tiers.
    let (status, saved) = set(&b, &id, json!({"allowed": "economy"})).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["limits"]["allowed"], json!(["economy"]));
    let (status, _, _) = until_code(&stack, &key, "premium", "model_not_allowed").await;
    assert_eq!(status, 403);
    assert_eq!(call(&stack, &key, "economy").await.0, 200);

    // Requests per minute: the window counts from when the limit is known.
    set(&b, &id, json!({"rpm": 3})).await;
    let (status, _, retry) = until_code(&stack, &key, "economy", "key_rate_limited").await;
    assert_eq!(status, 429);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // Tokens per minute: one answer spends more than 5 tokens.
    set(&b, &id, json!({"tpm": 5})).await;
    let (status, _, retry) = until_code(&stack, &key, "economy", "key_tokens_limited").await;
    assert_eq!(status, 429);
    assert!(retry.is_some());

    // The page lists the limits and the key's spend; the form saves them.
    let page = b.get("/keys").await;
    assert!(page.body.contains("5 tokens/min"), "{}", page.body);
    assert!(page.body.contains("Spent today / ever"));
    let saved = b
        .post(
            &format!("/keys/{id}/limits"),
            &[
                ("expires_at", ""),
                ("rpm", "120"),
                ("tpm", ""),
                ("allowed", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert!(b.get("/keys").await.body.contains("120 req/min"));
    let refused = b
        .post(&format!("/keys/{id}/limits"), &[("rpm", "-1")])
        .await;
    assert_eq!(refused.status, 200);
    assert!(
        refused.body.contains("`rpm` must be a whole number"),
        "{}",
        refused.body
    );
    let (_, keys) = b.api(Method::GET, "/api/v1/keys", None).await;
    assert_eq!(keys["keys"][0]["limits"], json!({"rpm": 120}));
    assert!(keys["keys"][0]["spent"].is_string());

    // Expiry: refused on every endpoint, with its own code.
    set(&b, &id, json!({"expires_at": "2020-01-01"})).await;
    let (status, _, _) = until_code(&stack, &key, "economy", "key_expired").await;
    assert_eq!(status, 401);
    let models = stack
        .gateway
        .http
        .get(format!("{}/v1/models", stack.gateway.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
    // Budgets: the key's spend in the period, from the ledger's state and
    // the gateway's own spend not in it yet.
    set(&b, &id, json!({})).await;
    until_code(&stack, &key, "premium", "").await;
    let (status, error) = set(
        &b,
        &id,
        json!({"budget": "0.000001", "budget_period": "hourly"}),
    )
    .await;
    assert_eq!(
        (status, error["error"]["param"].clone()),
        (400, json!("budget_period"))
    );
    let (status, error) = set(&b, &id, json!({"budget": "-3"})).await;
    assert_eq!(
        (status, error["error"]["param"].clone()),
        (400, json!("budget"))
    );
    let (status, saved) = set(
        &b,
        &id,
        json!({"budget": "0.000001", "budget_period": "daily"}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        saved["limits"]["budget"],
        json!({"amount": "0.000001", "period": "daily"})
    );
    let (status, _, retry) = until_code(&stack, &key, "premium", "key_budget_exceeded").await;
    assert_eq!(status, 429);
    assert!(retry.unwrap().parse::<u64>().unwrap() <= 86_400);
    // Once the ledger has folded the spend, its state alone refuses the key.
    for _ in 0..200 {
        let (_, keys) = b.api(Method::GET, "/api/v1/keys", None).await;
        if keys["keys"][0]["spent_today"] != "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call(&stack, &key, "economy").await.1, "key_budget_exceeded");
    set(
        &b,
        &id,
        json!({"budget": "0.000001", "budget_period": "lifetime"}),
    )
    .await;
    // The daily budget's 429 carries the same code until the gateway
    // learns the lifetime one; a lifetime budget answers 402 without a
    // Retry-After, as it does not come back.
    let (status, code, retry) = until(&stack, &key, "economy", |a| a.0 != 429).await;
    assert_eq!(
        (status, code.as_str(), retry),
        (402, "key_budget_exceeded", None),
        "a lifetime budget does not come back"
    );
    let page = b.get("/keys").await;
    assert!(page.body.contains("$0.000001 lifetime"), "{}", page.body);

    // Lifting every limit opens the key again.
    set(&b, &id, json!({})).await;
    let (status, _, _) = until_code(&stack, &key, "premium", "").await;
    assert_eq!(status, 200);
    stack.stop().await;
}
