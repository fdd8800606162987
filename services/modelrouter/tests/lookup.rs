//! `GET /v1/requests/{request_id}` on `modelrouter up`: a request's record
//! as the ledger has it, for the key's own account only.

use std::time::Duration;

use test_support::dashboard::Browser;
use test_support::deployment::{temp_dir, up};
use test_support::{eventually, header};

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");

async fn lookup(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    id: &str,
) -> (u16, serde_json::Value) {
    let mut request = http.get(format!("{url}/v1/requests/{id}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("up answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_request_is_looked_up_by_its_request_id_within_its_account() {
    let dir = temp_dir("lookup");
    let up = up(BIN, &dir, &[]).await;
    let key = up.printed_key.clone().expect("a key on first start");
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v1/chat/completions", up.url))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "standard", "prefer": "quality", "messages": [{"role": "user", "content": "Look me up"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (id, cost, model) = (
        header(&response, "x-request-id"),
        header(&response, "x-model-router-cost"),
        header(&response, "x-model-router-model"),
    );
    let body: serde_json::Value = response.json().await.unwrap();

    let mut found = (0, serde_json::Value::Null);
    let recorded = eventually(Duration::from_secs(10), async || {
        found = lookup(&http, &up.url, Some(&key), &id).await;
        found.0 == 200
    })
    .await;
    assert!(recorded, "{found:?}");
    let record = found.1;
    assert_eq!(record["object"], "router.request");
    assert_eq!(record["request_id"], id.as_str());
    assert_eq!(record["model"], model.as_str());
    assert_eq!(record["tier"], "standard");
    assert_eq!(record["cost"], cost.as_str());
    assert_eq!(record["outcome"], "completed");
    assert_eq!(record["tokens"]["input"], body["usage"]["prompt_tokens"]);
    assert_eq!(
        record["tokens"]["output"],
        body["usage"]["completion_tokens"]
    );
    assert!(record["timings"]["total_ms"].is_u64(), "{record}");
    assert!(record["attempts"].is_array(), "{record}");
    assert!(record["recorded_at"].is_string(), "{record}");

    // Not without a key, not with a wrong one, not for an id never issued.
    let (status, error) = lookup(&http, &up.url, None, &id).await;
    assert_eq!(status, 401, "{error}");
    assert_eq!(error["error"]["code"], "unauthenticated");
    let wrong = format!("mr_sk_{}", "x".repeat(40));
    assert_eq!(lookup(&http, &up.url, Some(&wrong), &id).await.0, 401);
    let (status, error) = lookup(&http, &up.url, Some(&key), "req_never_issued").await;
    assert_eq!(status, 404);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("req_never_issued"));
    let long = "r".repeat(4_000);
    assert_eq!(lookup(&http, &up.url, Some(&key), &long).await.0, 404);

    // Another account's key does not see it.
    let browser = Browser::new(&up.url);
    browser.sign_up("other@example.com", "Other").await;
    let other = browser.create_key("other").await;
    let (status, _) = lookup(&http, &up.url, Some(&other), &id).await;
    assert_eq!(status, 404, "another account's request is not found");
    std::fs::remove_dir_all(&dir).ok();
}
