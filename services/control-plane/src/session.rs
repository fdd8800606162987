//! Sessions and CSRF.
//!
//! A login is a JWT (HS256, signed with the deployment's session secret) in
//! the `mr_session` cookie: HttpOnly (scripts cannot read it), SameSite=Lax
//! (other sites' forms do not carry it), `Secure` behind TLS. It expires
//! `session_ttl_s` after it was issued; a session used after half of that
//! is re-issued with a fresh expiry (rotation), so an active user stays in
//! and an idle one is logged out. The JWT names the user and account; the
//! member's role is read from the database on every request, so a role
//! change or removal applies at once. Logging out bumps the user's session
//! epoch, which every session token carries: all of that user's sessions
//! end, including a copied cookie.
//!
//! Every form carries a CSRF token: the value of the `mr_csrf` cookie
//! (random, HttpOnly, SameSite=Strict), which another site can neither read
//! nor set. A POST whose form token differs from the cookie is refused
//! (double-submit). A session is bound to the CSRF cookie it was issued
//! with (a digest of it is in the token), so a cookie planted from a
//! sibling domain does not pass for the logged-in user's. The JSON API
//! takes the same token in `X-CSRF-Token` when it is called with a
//! session cookie.
//!
//! Cookies are marked `Secure` when the request came over HTTPS (as a
//! trusted proxy says; see `proxies`) or when configured to always be.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use chrono::Utc;
use cookie::{Cookie, SameSite};
use events::{AccountId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mr_session";
/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "mr_csrf";

/// What a session token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The account the user is working in.
    pub acct: AccountId,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// The user's session epoch when issued; a logout bumps it.
    pub ep: i64,
    /// The digest of the CSRF token the session is bound to.
    #[serde(default)]
    pub cb: Option<String>,
}

/// Issues and checks session tokens.
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_s: i64,
    secure: bool,
}

impl Sessions {
    /// Sessions signed with `secret`, lasting `ttl_s`.
    pub fn new(secret: &[u8], ttl_s: u64, secure: bool) -> Sessions {
        Sessions {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_s: i64::try_from(ttl_s).unwrap_or(i64::MAX / 2),
            secure,
        }
    }

    /// A `Set-Cookie` value logging `user` in to `account`, in the user's
    /// current session `epoch`, bound to the browser's CSRF token `csrf`.
    pub fn issue(
        &self,
        user: UserId,
        account: AccountId,
        epoch: i64,
        csrf: &str,
        https: bool,
    ) -> HeaderValue {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            acct: account,
            iat: now,
            exp: now + self.ttl_s,
            ep: epoch,
            cb: Some(binding(csrf)),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        self.cookie(SESSION_COOKIE, &token, self.ttl_s, SameSite::Lax, https)
    }

    /// The same session with a fresh expiry (rotation).
    pub fn reissue(&self, claims: &Claims, https: bool) -> HeaderValue {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iat: now,
            exp: now + self.ttl_s,
            ..claims.clone()
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        self.cookie(SESSION_COOKIE, &token, self.ttl_s, SameSite::Lax, https)
    }

    /// A `Set-Cookie` value ending the session.
    pub fn clear(&self, https: bool) -> HeaderValue {
        self.cookie(SESSION_COOKIE, "", 0, SameSite::Lax, https)
    }

    /// Whether `submitted` is this browser's CSRF token and, when a session
    /// is present, the one that session was issued with.
    pub fn csrf_ok(&self, headers: &HeaderMap, submitted: &str) -> bool {
        if !csrf_matches(headers, submitted) {
            return false;
        }
        match self.read(headers).and_then(|claims| claims.cb) {
            Some(bound) => bound == binding(submitted),
            None => true,
        }
    }

    /// The valid, unexpired session in `headers`, if any.
    pub fn read(&self, headers: &HeaderMap) -> Option<Claims> {
        let token = cookie(headers, SESSION_COOKIE)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// Whether `claims` are past half their life and should be re-issued.
    pub fn needs_rotation(&self, claims: &Claims) -> bool {
        2 * (Utc::now().timestamp() - claims.iat) >= self.ttl_s
    }

    /// The CSRF token of this browser, and a `Set-Cookie` when it is new.
    pub fn csrf(&self, headers: &HeaderMap, https: bool) -> (String, Option<HeaderValue>) {
        match cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 64) {
            Some(token) => (token.to_owned(), None),
            None => {
                let token = hex::encode(rand::random::<[u8; 32]>());
                let set = self.cookie(CSRF_COOKIE, &token, 30 * 86_400, SameSite::Strict, https);
                (token, Some(set))
            }
        }
    }

    fn cookie(
        &self,
        name: &'static str,
        value: &str,
        max_age: i64,
        same_site: SameSite,
        https: bool,
    ) -> HeaderValue {
        let cookie = Cookie::build((name, value))
            .path("/")
            .max_age(cookie::time::Duration::seconds(max_age))
            .http_only(true)
            .same_site(same_site)
            .secure(self.secure || https)
            .build();
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// What a session keeps of its CSRF token: a digest, so the token (which
/// the session cookie does not protect) cannot be read back from it.
fn binding(csrf: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(csrf.as_bytes())[..16])
}

/// Whether `submitted` is this browser's CSRF token (constant time).
pub fn csrf_matches(headers: &HeaderMap, submitted: &str) -> bool {
    let Some(expected) = cookie(headers, CSRF_COOKIE) else {
        return false;
    };
    expected.len() == submitted.len()
        && expected
            .bytes()
            .zip(submitted.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
        && !expected.is_empty()
}

/// The value of cookie `name` in `headers` (every `Cookie` header, parsed
/// by the `cookie` crate; a malformed pair is skipped).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

/// Appends `Set-Cookie` values to a response's headers.
pub fn set_cookies(headers: &mut HeaderMap, cookies: impl IntoIterator<Item = HeaderValue>) {
    for value in cookies {
        headers.append(SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with(cookie_header: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie_header).unwrap());
        headers
    }

    #[test]
    fn sessions_round_trip_and_expire() {
        let sessions = Sessions::new(b"0123456789abcdef0123456789abcdef", 3600, false);
        let (user, account) = (UserId(uuid::Uuid::new_v4()), AccountId::new());
        let set = sessions.issue(user, account, 0, "token", false);
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"));
        assert!(!set.contains("Secure"));
        assert!(sessions
            .issue(user, account, 0, "token", true)
            .to_str()
            .unwrap()
            .contains("; Secure"));
        let pair = set.split(';').next().unwrap();
        let claims = sessions.read(&headers_with(pair)).unwrap();
        assert_eq!((claims.sub, claims.acct), (user, account));
        assert!(!sessions.needs_rotation(&claims));

        let other = Sessions::new(b"another secret of thirty-two byt", 3600, false);
        assert!(
            other.read(&headers_with(pair)).is_none(),
            "forged signature"
        );
        let expired = Sessions::new(b"0123456789abcdef0123456789abcdef", 0, false);
        let set = expired.issue(user, account, 0, "token", false);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        assert!(expired.read(&headers_with(&pair)).is_none(), "expired");
    }

    #[test]
    fn csrf_is_double_submit() {
        let sessions = Sessions::new(b"0123456789abcdef0123456789abcdef", 3600, false);
        let (token, set) = sessions.csrf(&HeaderMap::new(), false);
        assert!(set.is_some());
        let headers = headers_with(&format!("{CSRF_COOKIE}={token}; other=1"));
        assert_eq!(sessions.csrf(&headers, false), (token.clone(), None));
        assert!(csrf_matches(&headers, &token));
        assert!(!csrf_matches(&headers, &token.replace(&token[..1], "z")));
        assert!(!csrf_matches(&headers, ""));
        assert!(!csrf_matches(&HeaderMap::new(), &token));
        // A session bound to one token refuses another browser cookie's.
        let (user, account) = (UserId(uuid::Uuid::new_v4()), AccountId::new());
        let session = sessions.issue(user, account, 0, &token, false);
        let pair = session
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let bound = headers_with(&format!("{pair}; {CSRF_COOKIE}={token}"));
        assert!(sessions.csrf_ok(&bound, &token));
        let planted = "b".repeat(64);
        let tossed = headers_with(&format!("{pair}; {CSRF_COOKIE}={planted}"));
        assert!(!sessions.csrf_ok(&tossed, &planted));
    }
}
