use gateway::GatewayConfig;
use serde_json::json;
use test_support::{Harness, Options};

use crate::{ask, read};

async fn raw(h: &Harness, body: &str) -> (u16, serde_json::Value) {
    let response = h
        .http
        .post(format!("{}/v1/chat/completions", h.url))
        .bearer_auth(&h.key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    let (status, _, body) = read(response).await;
    (status, body)
}

#[tokio::test]
async fn missing_wrong_and_malformed_keys_are_401() {
    let h = Harness::start().await;
    let url = format!("{}/v1/chat/completions", h.url);
    let cases = [
        None,
        Some("mr_sk_0123456789abcdef0123456789abcdefXYZW"),
        Some("sk-not-ours"),
        Some(""),
    ];
    for key in cases {
        let mut request = h.http.post(&url).json(&ask("economy", "hi"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let (status, headers, body) = read(request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{key:?}");
        assert!(headers.contains_key("x-request-id"));
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("0123456789abcdef0123"),
            "keys are redacted"
        );
    }
}

#[tokio::test]
async fn bad_bodies_get_clear_400s() {
    let h = Harness::start().await;
    let (status, body) = raw(&h, r#"{"model": "economy", "messages": [}"#).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column 35"),
        "{body}"
    );

    let (status, body) = raw(&h, r#"{"model": "economy", "messages": "hi"}"#).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages")),
        "{body}"
    );

    let (status, body) = raw(
        &h,
        r#"{"model": "economy", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("max_tokens")),
        "{body}"
    );

    let (status, body) = raw(&h, r#"{"messages": [{"role": "user", "content": "x"}]}"#).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("model"),
        "{body}"
    );

    let (status, body) = raw(&h, r#"{"model": "economy", "messages": []}"#).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages"))
    );

    let (status, body) = raw(
        &h,
        r#"{"model": "economy", "messages": [{"role": "user", "content": "x"}], "temperature": 3}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("temperature"))
    );

    let (status, body) = raw(
        &h,
        r#"{"model": "economy", "messages": [{"role": "user", "content": "x"}]} trailing"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = raw(&h, "").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn unknown_model_is_404_and_unknown_prefer_is_400() {
    let h = Harness::start().await;
    let (status, _, body) = read(h.chat(&ask("gpt-9000", "hi")).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let mut request = ask("economy", "hi");
    request["prefer"] = json!("slow");
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("prefer"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cheap, fast, balanced, quality, coding"));
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let gateway = GatewayConfig {
        body_limit_bytes: 4_096,
        ..Default::default()
    };
    let h = Harness::start_with(Options {
        gateway,
        ..Default::default()
    })
    .await;
    let (status, _, body) = read(h.chat(&ask("economy", &"x".repeat(10_000))).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope() {
    let h = Harness::start().await;
    let (status, headers, body) = read(h.get("/v1/nothing-here").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_url"))
    );
    assert!(headers.contains_key("x-request-id"));
    let (status, _, body) = read(h.get("/v1/chat/completions").await).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GET /v1/chat/completions"));
}

#[tokio::test]
async fn errors_repeat_at_most_200_characters_of_the_clients_input() {
    let h = Harness::start().await;
    let huge = "m".repeat(1 << 20);
    let (status, _, body) = read(h.chat(&ask(&huge, "hi")).await).await;
    assert_eq!(status, 404);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 400, "{} characters", message.len());
    assert!(
        message.contains(&format!("`{}…`", "m".repeat(200))),
        "{message}"
    );
    let mut request = ask("economy", "hi");
    request["prefer"] = serde_json::json!("p".repeat(100_000));
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().len() < 400);
    let path = format!("/v1/{}", "x".repeat(50_000));
    let (status, _, body) = read(h.get(&path).await).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().len() < 400);
}

/// Answers every request with a 307 to `target` + the request's path.
async fn redirector(target: std::sync::Arc<std::sync::OnceLock<String>>) -> String {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| async move {
        let to = format!("{}{}", target.get().map_or("", String::as_str), uri.path());
        axum::response::Redirect::temporary(&to)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(test_support::serve(listener, app, Default::default()));
    url
}

#[tokio::test]
async fn a_provider_redirect_is_not_followed_and_the_request_moves_on() {
    use catalog::ProviderId;
    use gateway::ProviderSettings;
    // The redirect points at the simulator's real Anthropic endpoint: a
    // client that followed it would be answered there, with the key sent
    // to a host the operator never configured.
    let target = std::sync::Arc::new(std::sync::OnceLock::new());
    let mut gateway = GatewayConfig::default();
    gateway.providers.insert(
        ProviderId::Anthropic,
        ProviderSettings {
            base_url: Some(redirector(std::sync::Arc::clone(&target)).await),
            ..Default::default()
        },
    );
    let h = Harness::start_with(Options {
        gateway,
        ..Default::default()
    })
    .await;
    target
        .set(format!(
            "{}{}",
            h.sim_url,
            simulator::base_path(ProviderId::Anthropic)
        ))
        .unwrap();

    let request = json!({"model": "claude-haiku-4-5", "models": ["claude-haiku-4-5", "gpt-4.1-mini"],
        "messages": [{"role": "user", "content": "hi"}]});
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        crate::header(&response, "x-model-router-model"),
        "gpt-4.1-mini"
    );
    assert_eq!(crate::header(&response, "x-model-router-attempts"), "2");

    let alone =
        json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = read(h.chat(&alone).await).await;
    assert!(status >= 500, "{status} {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("redirected to http://127.0.0.1"), "{body}");
    assert!(
        !h.upstream_requests()
            .await
            .iter()
            .any(|r| r["provider"] == "anthropic"),
        "no request reached the redirect's target"
    );
}
