//! Tenant isolation: account B, through every page and every admin-API
//! route, can neither read nor change anything of account A's. Run on NATS
//! and PostgreSQL, as a multi-tenant deployment runs.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Stack};

#[tokio::test(flavor = "multi_thread")]
async fn account_b_cannot_read_or_change_account_a() {
    let stack = Stack::start(Backends::distributed().await, fast_config()).await;
    let a = stack.browser();
    a.sign_up("alice@a.example", "Alpha Corp").await;
    let a_key = a.create_key("alpha-secret-name").await;
    let (_, admin) = a
        .api(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"name": "alpha-admin", "admin": true})),
        )
        .await;
    let a_admin = admin["key"].as_str().unwrap().to_owned();
    a.post(
        "/members/invite",
        &[("email", "invitee@a.example"), ("role", "member")],
    )
    .await;
    a.post("/providers/xai", &[("blocked", "true")]).await;
    let (status, destination) = a
        .api(
            Method::POST,
            "/api/v1/telemetry/destinations",
            Some(
                json!({"name": "alpha-traces", "endpoint": "https://alpha-otel.example/v1/traces",
                        "headers": {"x-alpha-team": "alpha-token-value"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{destination}");
    let a_destination = destination["id"].as_str().unwrap().to_owned();
    a.post("/limits", &[("daily_limit", "7.77")]).await;
    let (status, alert_rules) = a
        .api(
            Method::PUT,
            "/api/v1/alerts",
            Some(json!({"daily_limit_percents": [50], "webhook_url": "https://alpha-hooks.example/hook", "emails": ["alpha-ops@a.example"]})),
        )
        .await;
    assert_eq!(status, 200, "{alert_rules}");
    let a_webhook_secret = alert_rules["rules"]["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut request_id = String::new();
    for _ in 0..200 {
        let r = stack.chat(&a_key, "economy").await;
        if r.status() == 200 {
            request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!request_id.is_empty(), "A's key works");
    let (_, a_keys) = a.api(Method::GET, "/api/v1/keys", None).await;
    let a_key_ids: Vec<String> = a_keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    let (_, a_session) = a.api(Method::GET, "/api/v1/session", None).await;
    let a_user = a_session["user"].as_str().unwrap().to_owned();
    let a_account = a_session["account"].as_str().unwrap().to_owned();
    // A's traces that must never show to B.
    let secrets = [
        "alice@a.example",
        "Alpha Corp",
        "alpha-secret-name",
        "alpha-admin",
        "invitee@a.example",
        "7.77",
        &request_id,
        &a_user,
        &a_account,
        "alpha-traces",
        "alpha-otel.example",
        "x-alpha-team",
        "alpha-token-value",
        &a_destination,
        "alpha-hooks.example",
        "alpha-ops@a.example",
        &a_webhook_secret,
    ];

    let b = stack.browser();
    b.sign_up("bob@b.example", "Beta Ltd").await;
    let (_, b_admin) = b
        .api(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"name": "beta-admin", "admin": true})),
        )
        .await;
    let b_admin = b_admin["key"].as_str().unwrap().to_owned();

    // Every page.
    for path in [
        "/dashboard",
        "/accounts",
        "/keys",
        "/providers",
        "/limits",
        "/models",
        "/members",
        "/telemetry",
        "/",
        "/status",
        "/docs",
        "/requests",
        "/alerts",
        "/usage",
        "/usage?by=tag",
        "/requests/export.csv",
        "/requests/export.json",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        for secret in &secrets {
            assert!(!page.body.contains(secret), "{path} shows A's {secret}");
        }
    }
    assert!(
        !b.get("/providers").await.body.contains("blocked</span>"),
        "A's block is not B's"
    );
    // Every form, aimed at A's things.
    for id in &a_key_ids {
        assert_eq!(b.post(&format!("/keys/{id}/revoke"), &[]).await.status, 404);
        let limits = b.post(&format!("/keys/{id}/limits"), &[("rpm", "1")]).await;
        assert_eq!(limits.status, 404, "B cannot limit A's key");
        let (status, _) = b
            .api(
                Method::PUT,
                &format!("/api/v1/keys/{id}/limits"),
                Some(json!({"rpm": 1})),
            )
            .await;
        assert_eq!(status, 404);
    }
    for action in ["test", "delete"] {
        let path = format!("/telemetry/{a_destination}/{action}");
        assert_eq!(b.post(&path, &[]).await.status, 404, "{path}");
    }
    assert_eq!(
        b.post(&format!("/members/{a_user}/role"), &[("role", "member")])
            .await
            .status,
        404
    );
    assert_eq!(
        b.post(&format!("/accounts/{a_account}/switch"), &[])
            .await
            .status,
        404
    );
    // Every API route, by session and by B's admin key.
    let reads = [
        "/api/v1/session",
        "/api/v1/usage",
        "/api/v1/keys",
        "/api/v1/providers",
        "/api/v1/limits",
        "/api/v1/models",
        "/api/v1/members",
        "/api/v1/telemetry/destinations",
        "/api/v1/telemetry/presets",
        "/api/v1/requests",
        "/api/v1/alerts",
        "/api/v1/usage/breakdown?by=key",
        "/api/v1/requests/export",
        "/api/v1/requests/export?format=json",
    ];
    for path in reads {
        let (status, body) = b.api(Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}");
        let by_key = b
            .http
            .get(format!("{}{path}", stack.url))
            .bearer_auth(&b_admin)
            .send()
            .await
            .unwrap();
        assert_eq!(by_key.status(), 200, "{path} by admin key");
        let by_key = by_key.text().await.unwrap();
        for secret in &secrets {
            assert!(
                !body.to_string().contains(secret),
                "{path} shows A's {secret}"
            );
            assert!(
                !by_key.contains(secret),
                "{path} (admin key) shows A's {secret}"
            );
        }
    }
    for id in &a_key_ids {
        assert_eq!(
            b.api(Method::DELETE, &format!("/api/v1/keys/{id}"), None)
                .await
                .0,
            404
        );
        let by_key = b
            .http
            .delete(format!("{}/api/v1/keys/{id}", stack.url))
            .bearer_auth(&b_admin)
            .send()
            .await
            .unwrap();
        assert_eq!(by_key.status(), 404);
    }
    // A's request by its id, on B's page and B's API: not found.
    let a_request_page = format!("/requests/{request_id}");
    assert_eq!(b.get(&a_request_page).await.status, 404);
    let a_request = format!("/api/v1/requests/{request_id}");
    assert_eq!(b.api(Method::GET, &a_request, None).await.0, 404);
    let by_key = b
        .http
        .get(format!("{}{a_request}", stack.url))
        .bearer_auth(&b_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), 404);
    let a_dest = format!("/api/v1/telemetry/destinations/{a_destination}");
    let a_dest_test = format!("{a_dest}/test");
    let replacement = json!({"name": "stolen", "endpoint": "https://bob.example/v1/traces"});
    for (method, path, body) in [
        (Method::GET, &a_dest, None),
        (Method::PUT, &a_dest, Some(replacement.clone())),
        (Method::DELETE, &a_dest, None),
        (Method::POST, &a_dest_test, None),
    ] {
        let (status, reply) = b.api(method.clone(), path, body.clone()).await;
        assert_eq!(status, 404, "{method} {path}: {reply}");
        let mut by_key = b
            .http
            .request(method.clone(), format!("{}{path}", stack.url))
            .bearer_auth(&b_admin);
        if let Some(body) = body {
            by_key = by_key.json(&body);
        }
        assert_eq!(
            by_key.send().await.unwrap().status(),
            404,
            "{method} {path} by admin key"
        );
    }
    assert_eq!(
        b.api(
            Method::PUT,
            &format!("/api/v1/members/{a_user}"),
            Some(json!({"role": "owner"}))
        )
        .await
        .0,
        404
    );
    // B's own changes stay B's.
    b.api(
        Method::PUT,
        "/api/v1/providers/groq",
        Some(json!({"blocked": true})),
    )
    .await;
    b.api(
        Method::PUT,
        "/api/v1/limits",
        Some(json!({"daily_limit": "1"})),
    )
    .await;
    // A's admin key cannot act as B, and is refused on the gateway.
    let refused = stack.chat(&a_admin, "economy").await;
    assert_eq!(refused.status(), 401, "admin keys do not call models");

    // A is untouched.
    let (_, destination) = a.api(Method::GET, &a_dest, None).await;
    assert_eq!(destination["name"], "alpha-traces", "{destination}");
    let (_, keys) = a.api(Method::GET, "/api/v1/keys", None).await;
    assert!(keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["revoked"] == false));
    let (_, providers) = a.api(Method::GET, "/api/v1/providers", None).await;
    let blocked: Vec<&str> = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["blocked"] == true)
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(blocked, ["xai"]);
    let (_, members) = a.api(Method::GET, "/api/v1/members", None).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
    let limit = async || a.api(Method::GET, "/api/v1/limits", None).await.1["daily_limit"].clone();
    for _ in 0..100 {
        if limit().await == json!("7.77") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limit().await, json!("7.77"));
    let still = stack.chat(&a_key, "economy").await;
    assert_eq!(still.status(), 200);
    assert_ne!(still.headers()["x-model-router-provider"], "xai");

    // A's request, looked up by its id: A's API key finds it, B's does not.
    let b_key = b.create_key("beta-key").await;
    let lookup = async |key: &str, id: &str| {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/requests/{id}", stack.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let mut found = (0, String::new());
    for _ in 0..200 {
        found = lookup(&a_key, &request_id).await;
        if found.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(found.0, 200, "{}", found.1);
    let (status, text) = lookup(&b_key, &request_id).await;
    assert_eq!(status, 404);
    // The same answer as for an id never issued (naming the id B sent).
    let never = lookup(&b_key, "req_never_issued").await;
    assert_eq!(
        never.1.replace("req_never_issued", &request_id),
        text,
        "B cannot tell A's request from one that does not exist"
    );
    for secret in secrets.iter().filter(|s| **s != request_id) {
        assert!(!text.contains(*secret), "B's lookup shows {secret}");
    }
    stack.stop().await;
}
