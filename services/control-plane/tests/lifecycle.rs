//! What happens after access is given: admin keys when their creator is
//! demoted, members removed, invitations withdrawn or expired, passwords
//! changed and reset; and the probes an attacker tries: redirects after
//! login, guessing one account's password from many addresses, planted
//! CSRF cookies, framing. Against a real stack, over HTTP.

use std::time::Duration;

use control_plane::ControlPlaneConfig;
use reqwest::Method;
use serde_json::json;
use test_support::backends::Backends;
use test_support::dashboard::{fast_config, Browser, Stack, PASSWORD};
use test_support::eventually;

/// `owner` invites `email` as `role`; the invited person joins in a new browser.
async fn join(stack: &Stack, owner: &Browser, email: &str, role: &str) -> Browser {
    let (status, invited) = owner
        .api(
            Method::POST,
            "/api/v1/invitations",
            Some(json!({"email": email, "role": role})),
        )
        .await;
    assert_eq!(status, 201, "{invited}");
    let path = invited["invitation_path"].as_str().unwrap().to_owned();
    let joiner = stack.browser();
    let joined = joiner
        .post(&format!("{path}/signup"), &[("password", PASSWORD)])
        .await;
    assert_eq!(joined.status, 303, "{}", joined.body);
    joiner
}

async fn user_id(browser: &Browser) -> String {
    let (_, session) = browser.api(Method::GET, "/api/v1/session", None).await;
    session["user"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_key_acts_with_its_creators_current_role() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let alice = stack.browser();
    alice.sign_up("alice@example.com", "Shared").await;
    let bob = join(&stack, &alice, "bob@example.com", "owner").await;
    let (status, created) = bob
        .api(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"name": "bob's automation", "admin": true})),
        )
        .await;
    assert_eq!(status, 201);
    let bob_key = created["key"].as_str().unwrap().to_owned();
    let (alice_id, bob_id) = (user_id(&alice).await, user_id(&bob).await);
    let admin = |method: Method, path: String, body: Option<serde_json::Value>| {
        let key = bob_key.clone();
        let url = format!("{}{path}", stack.url);
        async move {
            let mut request = reqwest::Client::new().request(method, url).bearer_auth(key);
            if let Some(body) = body {
                request = request.json(&body);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    // The keys list says who made the key.
    let (_, keys) = alice.api(Method::GET, "/api/v1/keys", None).await;
    assert_eq!(keys["keys"][0]["created_by"], "bob@example.com");
    // Alice demotes Bob. His old admin key now acts as a member.
    let (status, _) = alice
        .api(
            Method::PUT,
            &format!("/api/v1/members/{bob_id}"),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(status, 200);
    let promote_self = admin(
        Method::PUT,
        format!("/api/v1/members/{bob_id}"),
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(
        promote_self, 403,
        "a demoted creator's key cannot promote him back"
    );
    let demote_alice = admin(
        Method::PUT,
        format!("/api/v1/members/{alice_id}"),
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(
        demote_alice, 403,
        "nor demote the owner who did not lose the role"
    );
    assert_eq!(
        admin(Method::GET, "/api/v1/members".into(), None).await,
        403
    );
    let (_, members) = alice.api(Method::GET, "/api/v1/members", None).await;
    let roles: Vec<(&str, &str)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert!(roles.contains(&("alice@example.com", "owner")));
    assert!(roles.contains(&("bob@example.com", "member")));
    // Removed, his key does not work at all.
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/members/{bob_id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(admin(Method::GET, "/api/v1/keys".into(), None).await, 401);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_member_loses_sessions_and_keys_at_once_and_the_last_owner_stays() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let owner = stack.browser();
    owner.sign_up("owner@example.com", "Team").await;
    let member = join(&stack, &owner, "member@example.com", "member").await;
    assert_eq!(member.get("/dashboard").await.status, 200);
    let key = member.create_key("member's key").await;
    assert!(
        eventually(Duration::from_secs(5), async || stack
            .chat(&key, "gpt-4.1-mini")
            .await
            .status()
            == 200)
        .await
    );
    let owner_key = owner.create_key("owner's key").await;
    let member_id = user_id(&member).await;
    let removed = owner
        .post(&format!("/members/{member_id}/remove"), &[])
        .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    assert_eq!(
        member.get("/dashboard").await.location.as_deref(),
        Some("/login"),
        "the removed member's session ends at once"
    );
    assert!(
        eventually(Duration::from_secs(1), async || stack
            .chat(&key, "gpt-4.1-mini")
            .await
            .status()
            == 401)
        .await,
        "the removed member's key stops within a second"
    );
    assert!(
        eventually(Duration::from_secs(5), async || stack
            .chat(&owner_key, "gpt-4.1-mini")
            .await
            .status()
            == 200)
        .await,
        "other keys go on"
    );
    let owner_id = user_id(&owner).await;
    let (status, body) = owner
        .api(Method::DELETE, &format!("/api/v1/members/{owner_id}"), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let (status, _) = member
        .api(Method::DELETE, &format!("/api/v1/members/{owner_id}"), None)
        .await;
    assert_eq!(status, 401);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_can_be_withdrawn_and_expire() {
    let config = ControlPlaneConfig {
        invitation_ttl_s: 1,
        ..fast_config()
    };
    let stack = Stack::start(Backends::embedded().await, config).await;
    let owner = stack.browser();
    owner.sign_up("owner@example.com", "Team").await;
    let invite = |email: &'static str| {
        let owner = &owner;
        async move {
            let (status, body) = owner
                .api(
                    Method::POST,
                    "/api/v1/invitations",
                    Some(json!({"email": email, "role": "member"})),
                )
                .await;
            assert_eq!(status, 201);
            body["invitation_path"].as_str().unwrap().to_owned()
        }
    };
    let withdrawn = invite("w@example.com").await;
    let (_, members) = owner.api(Method::GET, "/api/v1/members", None).await;
    let id = members["pending_invitations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(members["pending_invitations"][0]["expires_at"].is_string());
    let (status, _) = owner
        .api(Method::DELETE, &format!("/api/v1/invitations/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let visitor = stack.browser();
    assert_eq!(visitor.get(&withdrawn).await.status, 404);
    let joined = visitor
        .post(&format!("{withdrawn}/signup"), &[("password", PASSWORD)])
        .await;
    assert_eq!(joined.status, 404, "a withdrawn link does not work");
    let expiring = invite("e@example.com").await;
    assert_eq!(visitor.get(&expiring).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        visitor.get(&expiring).await.status,
        404,
        "an expired link does not work"
    );
    let (_, members) = owner.api(Method::GET, "/api/v1/members", None).await;
    assert_eq!(members["pending_invitations"], json!([]));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_change_with_the_current_one_and_reset_once_ending_other_sessions() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let here = stack.browser();
    here.sign_up("pat@example.com", "Pat").await;
    let elsewhere = stack.browser();
    assert_eq!(
        elsewhere.log_in("pat@example.com", PASSWORD).await.status,
        303
    );
    let wrong = here
        .post(
            "/account/password",
            &[
                ("current", "not my password"),
                ("new", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("current password is not right"));
    let weak = here
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", "1234567890")],
        )
        .await;
    assert_eq!(weak.status, 400);
    let changed = here
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", "a brand new passphrase")],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(
        here.get("/dashboard").await.status,
        200,
        "this session goes on"
    );
    assert_eq!(
        elsewhere.get("/dashboard").await.location.as_deref(),
        Some("/login"),
        "every other session ends"
    );
    assert_eq!(
        stack
            .browser()
            .log_in("pat@example.com", PASSWORD)
            .await
            .status,
        401
    );
    // An operator's reset link: once, and every session ends.
    let token = control_plane::ops::create_password_reset(&stack.backends.store, "PAT@example.com")
        .await
        .unwrap();
    let visitor = stack.browser();
    let form = visitor.get(&format!("/reset/{token}")).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("pat@example.com"));
    let reset = visitor
        .post(
            &format!("/reset/{token}"),
            &[("password", "reset to this one please")],
        )
        .await;
    assert_eq!(reset.status, 303, "{}", reset.body);
    assert_eq!(
        here.get("/dashboard").await.location.as_deref(),
        Some("/login")
    );
    let again = visitor
        .post(
            &format!("/reset/{token}"),
            &[("password", "and once more please")],
        )
        .await;
    assert_eq!(again.status, 404, "a reset link works once");
    assert_eq!(
        stack
            .browser()
            .log_in("pat@example.com", "reset to this one please")
            .await
            .status,
        303
    );
    assert!(
        control_plane::ops::create_password_reset(&stack.backends.store, "nobody@example.com")
            .await
            .is_err()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_redirects_stay_on_this_site_and_never_fail() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    stack.browser().sign_up("red@example.com", "Red").await;
    for next in [
        "/\t/evil.example",
        "/%09/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/keys\r\nSet-Cookie: x=y",
        "/keys\n",
    ] {
        let browser = stack.browser();
        let page = browser
            .get(&format!("/login?next={}", urlencode(next)))
            .await;
        assert_eq!(page.status, 200);
        let login = browser
            .post(
                "/login",
                &[
                    ("email", "red@example.com"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(login.status, 303, "{next:?}: {}", login.body);
        assert_eq!(login.location.as_deref(), Some("/dashboard"), "{next:?}");
    }
    let browser = stack.browser();
    let login = browser
        .post(
            "/login",
            &[
                ("email", "red@example.com"),
                ("password", PASSWORD),
                ("next", "/keys"),
            ],
        )
        .await;
    assert_eq!(login.location.as_deref(), Some("/keys"));
    stack.stop().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_one_accounts_password_from_many_addresses_is_slowed() {
    let config = ControlPlaneConfig {
        trusted_proxies: vec!["127.0.0.1".into()],
        ..fast_config()
    };
    let stack = Stack::start(Backends::embedded().await, config).await;
    stack
        .browser()
        .sign_up("target@example.com", "Target")
        .await;
    // Each guess from another address, through the trusted proxy.
    let mut statuses = Vec::new();
    for n in 0..7 {
        let address = format!("203.0.113.{n}");
        let attacker = Browser::with_headers(&stack.url, &[("x-forwarded-for", &address)]);
        statuses.push(
            attacker
                .log_in("target@example.com", "guess number one")
                .await
                .status,
        );
    }
    assert_eq!(&statuses[..5], [401; 5]);
    assert_eq!(statuses[5], 429, "{statuses:?}");
    // The owner is slowed, not locked out: after the wait, the right password works.
    let owner = Browser::with_headers(&stack.url, &[("x-forwarded-for", "198.51.100.9")]);
    let waited = eventually(Duration::from_secs(10), async || {
        owner.log_in("target@example.com", PASSWORD).await.status == 303
    })
    .await;
    assert!(waited);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    // Not trusted: every request is the peer's, whatever it claims.
    let config = ControlPlaneConfig {
        auth_attempts_per_minute: 3,
        ..fast_config()
    };
    let stack = Stack::start(Backends::embedded().await, config).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let address = format!("203.0.113.{n}");
        let client = Browser::with_headers(
            &stack.url,
            &[
                ("x-forwarded-for", &address),
                ("x-forwarded-proto", "https"),
            ],
        );
        let page = client
            .log_in(&format!("u{n}@example.com"), "some password here")
            .await;
        assert!(
            page.set_cookies.iter().all(|c| !c.contains("Secure")),
            "an untrusted X-Forwarded-Proto does not make cookies Secure"
        );
        statuses.push(page.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    stack.stop().await;
    // Trusted: each forwarded address has its own limit, and HTTPS is believed.
    let config = ControlPlaneConfig {
        auth_attempts_per_minute: 3,
        trusted_proxies: vec!["127.0.0.0/8".into()],
        ..fast_config()
    };
    let stack = Stack::start(Backends::embedded().await, config).await;
    for n in 0..4 {
        let address = format!("203.0.113.{n}");
        let client = Browser::with_headers(
            &stack.url,
            &[
                ("x-forwarded-for", &address),
                ("x-forwarded-proto", "https"),
            ],
        );
        let page = client.get("/login").await;
        assert!(
            page.set_cookies.iter().any(|c| c.contains("; Secure")),
            "{:?}",
            page.set_cookies
        );
        let page = client
            .log_in(&format!("u{n}@example.com"), "some password here")
            .await;
        assert_eq!(page.status, 401);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_refuse_framing_and_a_planted_csrf_cookie() {
    let stack = Stack::start(Backends::embedded().await, fast_config()).await;
    let browser = stack.browser();
    browser.sign_up("csrf@example.com", "Csrf").await;
    for path in ["/login", "/dashboard", "/keys", "/no-such-page"] {
        let response = browser
            .http
            .get(format!("{}{path}", stack.url))
            .send()
            .await
            .unwrap();
        let header = |name: &str| test_support::header(&response, name);
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "same-origin");
    }
    // A cookie tossed from a sibling domain, with a form token to match it:
    // not the token this session was issued with.
    let session = browser.cookie("mr_session").unwrap();
    let planted = "c".repeat(64);
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/keys", stack.url))
        .header("cookie", format!("mr_session={session}; mr_csrf={planted}"))
        .form(&[("name", "sneaky"), ("csrf", &planted)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(browser.create_key("honest").await.len(), 46);
    stack.stop().await;
}
