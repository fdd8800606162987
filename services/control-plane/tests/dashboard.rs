//! The dashboard and admin API against a real stack: simulator, gateway,
//! ledger and control plane on the embedded backbone (and NATS + PostgreSQL
//! where a test says so), driven over HTTP like a browser or a script.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Stack};

/// Polls `check` every 10 ms until it holds or `within` passes; the time it took.
async fn within(within: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_key_call_see_cost_revoke() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let browser = stack.browser();
    assert_eq!(
        browser.get("/dashboard").await.location.as_deref(),
        Some("/login")
    );
    browser.sign_up("ada@example.com", "Analytical").await;
    let dashboard = browser.get("/dashboard").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("ada@example.com") && dashboard.body.contains("Analytical"));
    let credited = within(Duration::from_secs(5), async || {
        browser
            .get("/dashboard")
            .await
            .body
            .contains("id=\"balance\">$25.00<")
    })
    .await;
    assert!(credited.is_some(), "demo credits shown to the owner");

    let key = browser.create_key("ci").await;
    assert!(key.starts_with("mr_sk_"));
    let keys_page = browser.get("/keys").await;
    assert!(!keys_page.body.contains(&key), "the key is shown once");
    assert!(
        keys_page.body.contains(&key[key.len() - 4..]),
        "its last four are listed"
    );

    // The gateway learns the key (it follows the keys bucket) and bills the account.
    let ok = within(Duration::from_secs(5), async || {
        stack.chat(&key, "gpt-4.1-mini").await.status() == 200
    })
    .await;
    assert!(ok.is_some(), "the new key works on the gateway");
    let response = stack.chat(&key, "gpt-4.1-mini").await;
    let cost = response.headers()["x-model-router-cost"]
        .to_str()
        .unwrap()
        .to_owned();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let seen = within(Duration::from_secs(10), async || {
        browser.get("/dashboard").await.body.contains(&request_id)
    })
    .await;
    assert!(seen.is_some(), "the request reaches the dashboard");
    let dashboard = browser.get("/dashboard").await.body;
    assert!(
        dashboard.contains(&format!("${cost}")),
        "its cost {cost} is shown"
    );
    assert!(dashboard.contains("<svg id=\"usage-chart\""));
    let keys_page = browser.get("/keys").await.body;
    assert!(!keys_page.contains("never"), "the key has a last-used time");

    // Revoke: refused by the gateway within a second.
    let id = keys_page
        .split("/keys/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_owned();
    let revoked = browser.post(&format!("/keys/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let took = within(Duration::from_secs(1), async || {
        stack.chat(&key, "economy").await.status() == 401
    })
    .await;
    assert!(took.is_some(), "a revoked key stops within 1 s");
    assert!(browser.get("/keys").await.body.contains("revoked"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_this_sites_csrf_token_are_refused() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let browser = stack.browser();
    // Sign-up itself needs the token.
    let page = browser
        .post_raw(
            "/signup",
            &[
                ("email", "eve@example.com"),
                ("password", "long enough password"),
                ("account_name", "x"),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("did not come from this site"));
    browser.sign_up("carl@example.com", "Carl's").await;
    let csrf = browser.csrf().await;
    for (path, fields) in [
        ("/keys", vec![("name", "x")]),
        ("/providers/openai", vec![("blocked", "true")]),
        ("/limits", vec![("daily_limit", "1")]),
        (
            "/members/invite",
            vec![("email", "x@example.com"), ("role", "member")],
        ),
        ("/logout", vec![]),
    ] {
        let missing = browser.post_raw(path, &fields).await;
        assert_eq!(missing.status, 403, "{path} without a token");
        let mut wrong = fields.clone();
        let forged = "0".repeat(64);
        wrong.push(("csrf", &forged));
        assert_eq!(
            browser.post_raw(path, &wrong).await.status,
            403,
            "{path} with a forged token"
        );
    }
    // Nothing changed.
    let (_, keys) = browser.api(Method::GET, "/api/v1/keys", None).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 0);
    // The JSON API with a session needs the token in a header.
    let no_header = browser
        .http
        .post(format!("{}/api/v1/keys", stack.url))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), 403);
    let body: serde_json::Value = no_header.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf_token_invalid");
    let (status, _) = browser
        .api(Method::POST, "/api/v1/keys", Some(json!({"name": "ok"})))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        csrf,
        browser.csrf().await,
        "the token is stable per browser"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_rules_and_session_expiry_and_rotation() {
    let mut config = fast_config();
    config.session_ttl_s = 2;
    let stack = Stack::start(Backends::embedded().await, config).await;
    let browser = stack.browser();
    for (password, why) in [
        ("short", "at least 10"),
        ("dot@example.com", "not be your email"),
    ] {
        let page = browser
            .post(
                "/signup",
                &[
                    ("email", "dot@example.com"),
                    ("password", password),
                    ("account_name", "Dot"),
                ],
            )
            .await;
        assert_eq!(page.status, 400);
        assert!(page.body.contains(why), "{}", page.body);
    }
    for (password, why) in [
        ("aaaaaaaaaaaa", "repeated pattern"),
        ("Password123", "most commonly used"),
        ("dot2026!!!", "with digits"),
    ] {
        let page = browser
            .post(
                "/signup",
                &[
                    ("email", "dot@example.com"),
                    ("password", password),
                    ("account_name", "Dot"),
                ],
            )
            .await;
        assert_eq!(page.status, 400, "{password}");
        assert!(page.body.contains(why), "{}", page.body);
    }
    browser.sign_up("dot@example.com", "Dot").await;
    // Signing up with a registered email answers exactly as a new sign-up
    // does (no enumeration), and opens nothing without that user's password.
    let stranger = stack.browser();
    let new_email = stranger
        .post(
            "/signup",
            &[
                ("email", "fresh@example.com"),
                ("password", "another long one"),
                ("account_name", "x"),
            ],
        )
        .await;
    let taken = stranger
        .post(
            "/signup",
            &[
                ("email", "DOT@example.com"),
                ("password", "another long one"),
                ("account_name", "x"),
            ],
        )
        .await;
    assert_eq!(
        (taken.status, &taken.location),
        (new_email.status, &new_email.location)
    );
    assert_eq!(taken.status, 303);
    assert_eq!(
        stranger
            .log_in("dot@example.com", "another long one")
            .await
            .status,
        401,
        "one user per email, case-insensitively; the password was not changed"
    );
    let (_, accounts) = browser.api(Method::GET, "/api/v1/session", None).await;
    assert_eq!(accounts["email"], "dot@example.com");
    let memberships: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM members m JOIN users u ON u.id = m.user_id WHERE u.email = 'dot@example.com'",
    )
    .fetch_one(&stack.backends.store.pool)
    .await
    .unwrap();
    assert_eq!(memberships, 1, "no account opened for a wrong password");
    // With the user's own password, sign-up adds an account to that user.
    let owner_again = stack.browser();
    let added = owner_again
        .post(
            "/signup",
            &[
                ("email", "dot@example.com"),
                ("password", test_support::dashboard::PASSWORD),
                ("account_name", "Dot's second"),
            ],
        )
        .await;
    assert_eq!(added.status, 303);
    let memberships: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM members m JOIN users u ON u.id = m.user_id WHERE u.email = 'dot@example.com'",
    )
    .fetch_one(&stack.backends.store.pool)
    .await
    .unwrap();
    assert_eq!(memberships, 2);

    // Wrong password: a clear message, no session.
    let other = stack.browser();
    let wrong = other.log_in("dot@example.com", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("email or password is not right"));
    let unknown = other.log_in("nobody@example.com", "whatever123").await;
    assert_eq!(unknown.status, 401, "unknown users get the same answer");

    // Past half its life, a used session is re-issued.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let page = browser.get("/dashboard").await;
    assert_eq!(page.status, 200);
    assert!(
        page.set_cookies
            .iter()
            .any(|c| c.starts_with("mr_session=")),
        "rotated"
    );
    let session = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("mr_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Max-Age=2")
    );
    // Idle past its expiry (whole seconds), it is gone.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        browser.get("/dashboard").await.location.as_deref(),
        Some("/login")
    );
    let (status, body) = browser.api(Method::GET, "/api/v1/keys", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    // Logging in again works, and logging out ends it.
    let login = browser
        .log_in("dot@example.com", "correct horse battery staple")
        .await;
    assert_eq!(login.status, 303);
    assert_eq!(browser.get("/dashboard").await.status, 200);
    // A second browser of the same user, and a copy of the first's cookie.
    let other = stack.browser();
    let login = other
        .log_in("dot@example.com", "correct horse battery staple")
        .await;
    assert_eq!(login.status, 303);
    let copied = browser.cookie("mr_session").unwrap();
    assert_eq!(browser.post("/logout", &[]).await.status, 303);
    assert_eq!(browser.get("/dashboard").await.status, 303);
    assert_eq!(
        other.get("/dashboard").await.location.as_deref(),
        Some("/login"),
        "logout ends every session of the user"
    );
    let replay = reqwest::Client::new()
        .get(format!("{}/dashboard", stack.url))
        .header("cookie", format!("mr_session={copied}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.url().path(),
        "/login",
        "a copied cookie is dead after logout"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_and_sign_up_are_rate_limited() {
    let mut config = fast_config();
    config.auth_attempts_per_minute = 3;
    let stack = Stack::start(Backends::embedded().await, config).await;
    let browser = stack.browser();
    for _ in 0..3 {
        let page = browser.log_in("x@example.com", "guess guess guess").await;
        assert_eq!(page.status, 401);
    }
    let limited = browser.log_in("x@example.com", "guess guess guess").await;
    assert_eq!(limited.status, 429);
    assert!(limited.body.contains("Too many attempts"));
    let signup = browser
        .post(
            "/signup",
            &[
                ("email", "y@example.com"),
                ("password", "long enough password"),
                ("account_name", "y"),
            ],
        )
        .await;
    assert_eq!(
        signup.status, 429,
        "the same address is limited on sign-up too"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_block_makes_routing_skip_the_provider() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let browser = stack.browser();
    browser.sign_up("bea@example.com", "Bea").await;
    let key = browser.create_key("k").await;
    within(Duration::from_secs(5), async || {
        stack.chat(&key, "economy").await.status() == 200
    })
    .await;
    let provider_of = async |model: &str| {
        let r = stack.chat(&key, model).await;
        (
            r.status().as_u16(),
            r.headers()
                .get("x-model-router-provider")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    };
    // Economy: the tier with free models, which an account without credit may use.
    let (_, first) = provider_of("economy").await;
    let first = first.unwrap();
    let page = browser
        .post(&format!("/providers/{first}"), &[("blocked", "true")])
        .await;
    assert_eq!(page.status, 303);
    assert!(browser.get("/providers").await.body.contains("blocked"));
    // Gateways follow the policies bucket: the block reaches them within
    // milliseconds of the page's answer (the README's promise), not before.
    let skipped = within(Duration::from_secs(1), async || {
        let (status, next) = provider_of("economy").await;
        status == 200 && next.as_deref() != Some(first.as_str())
    })
    .await;
    assert!(skipped.is_some(), "routing skips {first} within 1 s");
    // Pinning a model of the blocked provider: 403 in the OpenAI envelope.
    let catalog = stack.gateway.gateway.catalog.snapshot();
    let model = catalog
        .models()
        .iter()
        .find(|m| m.provider.as_str() == first)
        .unwrap()
        .id
        .clone();
    let response = stack.chat(&key, &model).await;
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_blocked");
    // Unblocking through the JSON API restores it.
    let (status, _) = browser
        .api(
            Method::PUT,
            &format!("/api/v1/providers/{first}"),
            Some(json!({"blocked": false})),
        )
        .await;
    assert_eq!(status, 200);
    let served = within(Duration::from_secs(1), async || {
        stack.chat(&key, &model).await.status() == 200
    })
    .await;
    assert!(served.is_some(), "{model} is served again within 1 s");
    let (status, body) = browser
        .api(
            Method::PUT,
            "/api/v1/providers/nope",
            Some(json!({"blocked": true})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a provider"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_limit_answers_429_once_reached() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let browser = stack.browser();
    browser.sign_up("lin@example.com", "Lin").await;
    let key = browser.create_key("k").await;
    within(Duration::from_secs(5), async || {
        stack.chat(&key, "gpt-4.1-mini").await.status() == 200
    })
    .await;
    let bad = browser
        .post("/limits", &[("daily_limit", "five dollars")])
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("not an amount in USD"));
    // A limit below what was spent already: the next request is refused.
    let page = browser
        .post("/limits", &[("daily_limit", "0.000001")])
        .await;
    assert_eq!(page.status, 303);
    let refused = within(Duration::from_secs(5), async || {
        stack.chat(&key, "gpt-4.1-mini").await.status() == 429
    })
    .await;
    assert!(refused.is_some(), "429 at the limit");
    let response = stack.chat(&key, "gpt-4.1-mini").await;
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "daily_limit_exceeded");
    assert!(browser.get("/limits").await.body.contains("$0.000001"));
    // Lifting it (empty) serves again.
    browser.post("/limits", &[("daily_limit", "")]).await;
    let served = within(Duration::from_secs(5), async || {
        stack.chat(&key, "gpt-4.1-mini").await.status() == 200
    })
    .await;
    assert!(served.is_some());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invited_members_join_with_the_role_they_were_given() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let owner = stack.browser();
    owner.sign_up("olga@example.com", "Olga's team").await;
    let page = owner
        .post(
            "/members/invite",
            &[("email", "max@example.com"), ("role", "member")],
        )
        .await;
    assert_eq!(page.status, 200);
    let link = page
        .body
        .split("id=\"invitation-link\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    let path = link.trim_start_matches(&stack.url).to_owned();
    assert!(path.starts_with("/invite/"), "{link}");
    assert!(
        !owner.get("/members").await.body.contains(&path),
        "the link is shown once"
    );

    let max = stack.browser();
    let invite = max.get(&path).await;
    assert_eq!(invite.status, 200);
    assert!(invite.body.contains("Olga&#39;s team"), "{}", invite.body);
    let joined = max
        .post(
            &format!("{path}/signup"),
            &[("password", "maxes long password")],
        )
        .await;
    assert_eq!(joined.status, 303, "{}", joined.body);
    assert_eq!(max.get(&path).await.status, 404, "an invitation works once");

    // A member: no billing, no members page, no admin keys.
    let dashboard = max.get("/dashboard").await.body;
    assert!(dashboard.contains("Olga"));
    assert!(
        !dashboard.contains("id=\"balance\""),
        "members do not see billing"
    );
    assert_eq!(max.get("/members").await.status, 403);
    let (status, usage) = max.api(Method::GET, "/api/v1/usage", None).await;
    assert_eq!(status, 200);
    assert!(usage.get("balance").is_none());
    assert_eq!(max.api(Method::GET, "/api/v1/members", None).await.0, 403);
    assert_eq!(
        max.api(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"name": "a", "admin": true}))
        )
        .await
        .0,
        403
    );
    // The owner makes Max an owner; the change applies at once.
    let (_, members) = owner.api(Method::GET, "/api/v1/members", None).await;
    let max_id = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "max@example.com")
        .unwrap()["user"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = owner
        .api(
            Method::PUT,
            &format!("/api/v1/members/{max_id}"),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(max.get("/members").await.status, 200);
    // The last owner cannot step down.
    let (_, me) = owner.api(Method::GET, "/api/v1/session", None).await;
    let olga = me["user"].as_str().unwrap().to_owned();
    owner
        .api(
            Method::PUT,
            &format!("/api/v1/members/{max_id}"),
            Some(json!({"role": "member"})),
        )
        .await;
    let (status, body) = owner
        .api(
            Method::PUT,
            &format!("/api/v1/members/{olga}"),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_in_two_accounts_accepts_an_invitation_and_switches() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let olga = stack.browser();
    olga.sign_up("olga@example.com", "Olga team").await;
    let bea = stack.browser();
    bea.sign_up("bea@example.com", "Bea own").await;
    let carl = stack.browser();
    carl.sign_up("carl@example.com", "Carl own").await;
    let carl_account = carl.account().await.to_string();

    let (status, invited) = olga
        .api(
            Method::POST,
            "/api/v1/invitations",
            Some(json!({"email": "bea@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, 201);
    let path = invited["invitation_path"].as_str().unwrap().to_owned();
    // Signed in already: the page offers to accept.
    let page = bea.get(&path).await;
    assert!(page.body.contains("Accept the invitation"), "{}", page.body);
    assert_eq!(bea.post(&path, &[]).await.status, 303);
    assert!(bea.get("/dashboard").await.body.contains("Olga team"));
    // Someone else cannot use an invitation made for Bea.
    let (_, again) = olga
        .api(
            Method::POST,
            "/api/v1/invitations",
            Some(json!({"email": "bea@example.com", "role": "member"})),
        )
        .await;
    let other_path = again["invitation_path"].as_str().unwrap().to_owned();
    assert_eq!(carl.post(&other_path, &[]).await.status, 403);

    let accounts = bea.get("/accounts").await.body;
    assert!(accounts.contains("Olga team") && accounts.contains("Bea own"));
    let (_, own) = bea.api(Method::GET, "/api/v1/session", None).await;
    assert_eq!(own["account_name"], "Olga team");
    let bea_own = accounts
        .split("/accounts/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        bea.post(&format!("/accounts/{bea_own}/switch"), &[])
            .await
            .status,
        303
    );
    let dashboard = bea.get("/dashboard").await.body;
    assert!(dashboard.contains("Bea own") && dashboard.contains("(owner)"));
    assert_eq!(
        bea.post(&format!("/accounts/{carl_account}/switch"), &[])
            .await
            .status,
        404,
        "no switching into an account one is not a member of"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_telemetry_page_adds_tests_and_deletes_a_destination_and_refuses_bad_input() {
    let receiver = test_support::otlp::Receiver::start().await;
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let owner = stack.browser();
    owner.sign_up("otel@example.com", "Traced").await;
    assert_eq!(owner.get("/telemetry").await.status, 200);

    let bad = owner
        .post(
            "/telemetry",
            &[
                ("name", "mine"),
                ("endpoint", "collector:4318"),
                ("header_name", "x-key"),
                ("header_value", "very-secret-value"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("is not an endpoint URL"), "{}", bad.body);
    assert!(
        !bad.body.contains("very-secret-value"),
        "a secret is never shown back"
    );
    assert!(
        bad.body.contains("value=\"mine\""),
        "the form keeps what was typed"
    );
    let bad_header = owner
        .post(
            "/telemetry",
            &[
                ("name", "mine"),
                ("endpoint", &receiver.http_url()),
                ("header_name", "bad name"),
                ("header_value", "v"),
            ],
        )
        .await;
    assert_eq!(bad_header.status, 400);
    assert!(
        bad_header.body.contains("is not a header name"),
        "{}",
        bad_header.body
    );

    let saved = owner
        .post(
            "/telemetry",
            &[
                ("name", "local collector"),
                ("endpoint", &receiver.http_url()),
                ("protocol", "http/json"),
                ("header_name", "x-key"),
                ("header_value", "very-secret-value"),
                ("sampling", "ratio"),
                ("ratio", "0.5"),
                ("capture_content", "true"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let page = owner.get("/telemetry?notice=saved").await;
    assert!(
        page.body.contains("local collector")
            && page.body.contains("x-key")
            && page.body.contains("50% of requests")
            && page.body.contains("with text"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("very-secret-value"));
    let (_, listed) = owner
        .api(Method::GET, "/api/v1/telemetry/destinations", None)
        .await;
    let id = listed["destinations"][0]["id"].as_str().unwrap().to_owned();

    let tested = owner.post(&format!("/telemetry/{id}/test"), &[]).await;
    assert_eq!(tested.status, 200);
    assert!(
        tested.body.contains("Test span delivered"),
        "{}",
        tested.body
    );
    let spans = receiver
        .wait_for(Duration::from_secs(5), |s| !s.is_empty())
        .await;
    assert_eq!(
        spans[0].headers.get("x-key").map(String::as_str),
        Some("very-secret-value")
    );

    receiver.fail_with(Some(403));
    let refused = owner.post(&format!("/telemetry/{id}/test"), &[]).await;
    assert!(
        refused.body.contains("not delivered") && refused.body.contains("403"),
        "{}",
        refused.body
    );

    let deleted = owner.post(&format!("/telemetry/{id}/delete"), &[]).await;
    assert_eq!(deleted.status, 303);
    assert!(!owner
        .get("/telemetry")
        .await
        .body
        .contains("local collector"));
    assert_eq!(
        owner
            .post(&format!("/telemetry/{id}/delete"), &[])
            .await
            .status,
        404
    );
}
