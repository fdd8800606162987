//! Control-plane settings (`[control_plane]` in the config file).

use serde::Deserialize;

/// Settings; every field has a default (see the README).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// How long a login lasts without activity, in seconds (default 12 h).
    /// A session used after half of it is re-issued (rotated).
    pub session_ttl_s: u64,
    /// argon2id memory cost in KiB (default 19,456 = 19 MiB, OWASP's minimum).
    pub argon2_memory_kib: u32,
    /// argon2id passes (default 2).
    pub argon2_iterations: u32,
    /// argon2id lanes (default 1).
    pub argon2_parallelism: u32,
    /// Sign-up and login attempts per client address per minute (default 10).
    pub auth_attempts_per_minute: u32,
    /// Always mark cookies `Secure` (default false: they are marked when a
    /// trusted proxy says the request came over HTTPS; set it when TLS ends
    /// at a proxy that does not say so).
    pub secure_cookies: bool,
    /// Demo credits (USD) granted to every new account; `modelrouter up`
    /// sets it in simulator mode. Default none.
    pub demo_credits: Option<String>,
    /// How long an invitation link works, in seconds (default 7 days).
    pub invitation_ttl_s: u64,
    /// Emails of users who operate the deployment (the `/operator` page);
    /// the first user `modelrouter up` creates is one too.
    pub operators: Vec<String>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed: the client address for rate limits,
    /// and HTTPS for `Secure` cookies. Default none: the peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The SMTP server alert email goes through (`smtp://host:25`,
    /// `smtp://user:pass@host:587?tls=required`, `smtps://host:465`);
    /// default none: email alerts are recorded as not sent.
    pub smtp_url: Option<String>,
    /// The `From` of alert email.
    pub alert_from: String,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            session_ttl_s: 12 * 3600,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            auth_attempts_per_minute: 10,
            secure_cookies: false,
            demo_credits: None,
            invitation_ttl_s: 7 * 86_400,
            operators: Vec::new(),
            trusted_proxies: Vec::new(),
            smtp_url: None,
            alert_from: "Model Router <alerts@localhost>".into(),
        }
    }
}
