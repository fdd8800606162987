//! The control plane for tests: a whole stack (simulator, gateway, ledger,
//! control plane) on one backbone, and a cookie-keeping browser-like client
//! that fills in CSRF tokens the way the dashboard's forms do.

use std::sync::Arc;
use std::time::Duration;

use control_plane::{ControlPlane, ControlPlaneConfig, Secrets};
use gateway::keys::KeyRing;
use reqwest::cookie::{CookieStore, Jar};
use tokio::net::TcpListener;

use crate::backends::Backends;
use crate::{Harness, Options};

/// The secret every test stack hashes keys under.
pub const KEY_HASH_SECRET: &str = "test-key-hash-secret-of-at-least-32-bytes";
/// The secret every test stack signs sessions with.
pub const SESSION_SECRET: &str = "test-session-secret-of-at-least-32-bytes!";

/// Settings that make tests fast: cheap argon2 (the production parameters
/// are the defaults) and generous attempt limits.
pub fn fast_config() -> ControlPlaneConfig {
    ControlPlaneConfig {
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        auth_attempts_per_minute: 1000,
        demo_credits: Some("25".into()),
        ..ControlPlaneConfig::default()
    }
}

/// Simulator, gateway (following keys and blocks), ledger and control plane.
pub struct Stack {
    /// The gateway (its harness key belongs to no dashboard account).
    pub gateway: Harness,
    /// The control plane's base URL.
    pub url: String,
    pub control_plane: Arc<ControlPlane>,
    pub backends: Backends,
    ledger: tokio::task::JoinHandle<()>,
}

/// The webhook secret a Stripe-taking test stack verifies with.
pub const WEBHOOK_SECRET: &str = "whsec_test_stack";

impl Stack {
    /// A stack on `backends` with `config`, taking no card payments.
    pub async fn start(backends: Backends, config: ControlPlaneConfig) -> Stack {
        Stack::start_inner(backends, config, false).await
    }

    /// The same, taking card payments through the simulator's Stripe: its
    /// webhooks come to the control plane, and the ledger charges
    /// auto-recharges there (retrying a decline at once).
    pub async fn start_with_stripe(backends: Backends, config: ControlPlaneConfig) -> Stack {
        Stack::start_inner(backends, config, true).await
    }

    async fn start_inner(backends: Backends, config: ControlPlaneConfig, stripe: bool) -> Stack {
        backends.store.migrate().await.expect("migrations");
        let ring = Arc::new(KeyRing::new(
            auth::KeyHasher::new(KEY_HASH_SECRET.as_bytes()).expect("secret"),
        ));
        let events = backends.gateway_events("gw-test").await;
        let gateway = Harness::start_with(Options {
            events: Some(events),
            keys: Some(ring),
            ..Options::default()
        })
        .await;
        follow_access(&backends, &gateway.gateway).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stripe = stripe.then(|| stripe_client(&gateway.sim_url));
        let ledger = backends.spawn_ledger_charging(stripe.clone()).await;
        let payments = stripe.map(|stripe| control_plane::billing::Payments {
            stripe,
            webhook_secrets: vec![WEBHOOK_SECRET.into()],
            public_url: url.clone(),
            limits: payments::Limits::default(),
        });
        if payments.is_some() {
            let registered = gateway
                .http
                .post(format!("{}/_sim/stripe/webhook_endpoints", gateway.sim_url))
                .json(&serde_json::json!({"url": format!("{url}/stripe/webhook"), "secret": WEBHOOK_SECRET}))
                .send()
                .await
                .expect("simulator reachable");
            assert!(registered.status().is_success());
        }
        let control_plane = ControlPlane::start(
            config,
            Secrets {
                key_hash: KEY_HASH_SECRET.as_bytes().to_vec(),
                session: SESSION_SECRET.as_bytes().to_vec(),
                telemetry: Some(SESSION_SECRET.as_bytes().to_vec()),
            },
            Arc::clone(&backends.log),
            backends.store.clone(),
            Arc::clone(&gateway.gateway.catalog),
            None,
            payments,
        )
        .await
        .expect("control plane starts");
        let app = control_plane::router(Arc::clone(&control_plane));
        tokio::spawn(crate::serve(listener, app, Default::default()));
        Stack {
            gateway,
            url,
            control_plane,
            backends,
            ledger,
        }
    }

    /// `POST /v1/chat/completions` on the gateway with `key`, asking `model`
    /// for a short answer.
    pub async fn chat(&self, key: &str, model: &str) -> reqwest::Response {
        self.gateway
            .http
            .post(format!("{}/v1/chat/completions", self.gateway.url))
            .bearer_auth(key)
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]}))
            .send()
            .await
            .expect("gateway reachable")
    }

    /// A new browser on the dashboard.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.url)
    }

    /// Stops the ledger and deletes the backbone's NATS stream and buckets.
    pub async fn stop(self) {
        self.ledger.abort();
        self.backends.cleanup().await;
    }
}

/// A Stripe client talking to the simulator at `sim_url`.
pub fn stripe_client(sim_url: &str) -> payments::stripe::Stripe {
    payments::stripe::Stripe::new(&payments::stripe::StripeConfig {
        secret_key: Some(simulator::stripe::SECRET_KEY.into()),
        webhook_secrets: vec![WEBHOOK_SECRET.into()],
        api_base: Some(format!("{sim_url}/stripe")),
    })
    .expect("stripe client")
}

/// Makes a gateway follow the keys and blocks of `backends`.
pub async fn follow_access(backends: &Backends, gateway: &gateway::Gateway) {
    let source = |bucket| gateway::follow::Source::new(Arc::clone(&backends.log), bucket, None);
    gateway
        .keys
        .follow(source(events::KEYS_BUCKET))
        .await
        .expect("keys load");
    gateway
        .policies
        .follow(source(events::POLICIES_BUCKET))
        .await
        .expect("policies load");
}

/// A page as a browser received it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub body: String,
    /// Where a redirect points.
    pub location: Option<String>,
    /// The `Set-Cookie` values of the response.
    pub set_cookies: Vec<String>,
}

/// The password [`Browser::sign_up`] uses.
pub const PASSWORD: &str = "correct horse battery staple";

/// A client that keeps cookies, does not follow redirects, and sends the
/// CSRF token with forms (unless told not to).
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    jar: Arc<Jar>,
}

impl Browser {
    /// A browser with no cookies yet.
    pub fn new(base: &str) -> Browser {
        Browser::with_headers(base, &[])
    }

    /// A browser sending `headers` with every request (as a proxy in front
    /// of the dashboard would add them).
    pub fn with_headers(base: &str, headers: &[(&'static str, &str)]) -> Browser {
        let jar = Arc::new(Jar::default());
        let mut defaults = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            defaults.insert(
                *name,
                reqwest::header::HeaderValue::from_str(value).expect("header value"),
            );
        }
        let http = reqwest::Client::builder()
            .default_headers(defaults)
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Browser {
            http,
            base: base.to_owned(),
            jar,
        }
    }

    /// The value of cookie `name`, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = self.base.parse().ok()?;
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// This browser's CSRF token (fetched with a page when it has none).
    pub async fn csrf(&self) -> String {
        if self.cookie("mr_csrf").is_none() {
            self.get("/login").await;
        }
        self.cookie("mr_csrf")
            .expect("the dashboard sets a CSRF cookie")
    }

    async fn page(response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body = response.text().await.unwrap_or_default();
        Page {
            status,
            body,
            location,
            set_cookies,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("control plane reachable");
        Browser::page(response).await
    }

    /// Posts a form with this browser's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &csrf));
        self.post_raw(path, &all).await
    }

    /// Posts a form exactly as given (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .expect("control plane reachable");
        Browser::page(response).await
    }

    /// Signs up (with [`PASSWORD`]) and logs in; panics if either fails.
    pub async fn sign_up(&self, email: &str, account: &str) {
        let page = self
            .post(
                "/signup",
                &[
                    ("email", email),
                    ("password", PASSWORD),
                    ("account_name", account),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "sign-up failed: {}", page.body);
        assert_eq!(
            page.location.as_deref(),
            Some("/login?notice=signed_up"),
            "sign-up leads to the login"
        );
        let login = self.log_in(email, PASSWORD).await;
        assert_eq!(
            login.status, 303,
            "login after sign-up failed: {}",
            login.body
        );
    }

    /// Posts the login form.
    pub async fn log_in(&self, email: &str, password: &str) -> Page {
        self.post("/login", &[("email", email), ("password", password)])
            .await
    }

    /// Creates an API key on the keys page and returns its plaintext.
    pub async fn create_key(&self, name: &str) -> String {
        let page = self.post("/keys", &[("name", name)]).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let start = page
            .body
            .find("id=\"new-key\">")
            .expect("the new key is shown")
            + 13;
        page.body[start..]
            .split('<')
            .next()
            .expect("key text")
            .to_owned()
    }

    /// Starts a deposit of `amount` through the admin API and pays it on the
    /// hosted Checkout page with `card`; the Checkout Session's id.
    pub async fn deposit(&self, amount: &str, card: &str) -> String {
        let (status, started) = self
            .api(
                reqwest::Method::POST,
                "/api/v1/billing/deposits",
                Some(serde_json::json!({ "amount": amount })),
            )
            .await;
        assert_eq!(status, 201, "{started}");
        let checkout = started["checkout_url"].as_str().expect("checkout url");
        assert_eq!(crate::stripe::pay(checkout, card).await, 303, "paid");
        started["session"].as_str().expect("session").to_owned()
    }

    /// Saves `card` through the billing page and Checkout (setup mode);
    /// returns once `/api/v1/billing` shows it (within 30 s).
    pub async fn save_card(&self, card: &str) {
        let page = self.post("/billing/card", &[]).await;
        assert_eq!(page.status, 303, "{}", page.body);
        let checkout = page.location.expect("sent to Checkout");
        assert_eq!(crate::stripe::pay(&checkout, card).await, 303, "saved");
        let shown = crate::eventually(Duration::from_secs(30), async || {
            let (_, billing) = self
                .api(reqwest::Method::GET, "/api/v1/billing", None)
                .await;
            billing["auto_recharge"]["card"].is_string()
        })
        .await;
        assert!(shown, "the saved card never showed");
    }

    /// The account this browser's session is in.
    pub async fn account(&self) -> events::AccountId {
        let (_, session) = self
            .api(reqwest::Method::GET, "/api/v1/session", None)
            .await;
        session["account"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("a signed-in session names its account")
    }

    /// Calls the JSON admin API with this browser's session and CSRF token.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let csrf = self.csrf().await;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-csrf-token", csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control plane reachable");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }
}
