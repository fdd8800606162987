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
    /// Mark cookies `Secure` (default false: `modelrouter up` serves plain
    /// HTTP on localhost; set it behind TLS).
    pub secure_cookies: bool,
    /// Demo credits (USD) granted to every new account; `modelrouter up`
    /// sets it in simulator mode. Default none.
    pub demo_credits: Option<String>,
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
        }
    }
}
