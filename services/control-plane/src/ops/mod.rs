//! The operations the dashboard and the JSON API share. Each check happens
//! here, once; each change is an event appended to the log and then
//! applied to the projection. By domain: [`users`] (sign-up, login,
//! passwords), [`keys`], [`members`] (invitations, roles, removal).

pub mod keys;
mod members;
pub mod telemetry;
mod users;

pub use members::Invitation;
pub use users::{create_password_reset, AfterLogin, FirstAccount, LoginBackoff};

use events::{AccountId, DailyLimitSet, Envelope, Event, ProviderBlock, Role, UserId};
use money::Money;
use sha2::{Digest, Sha256};

use crate::error::CpError;
use crate::ControlPlane;

/// A logged-in member, working in one account.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: UserId,
    pub email: String,
    pub account: AccountId,
    pub account_name: String,
    pub role: Role,
    /// The user's session epoch (see `session`).
    pub session_epoch: i64,
    /// The user operates the deployment (sees `/operator`).
    pub operator: bool,
    /// Acting through an admin key (created by this user), not a session.
    pub via_admin_key: bool,
}

impl Member {
    /// Only owners may go on.
    pub fn require_owner(&self) -> Result<(), CpError> {
        match self.role {
            Role::Owner => Ok(()),
            Role::Member => Err(CpError::Forbidden(
                "Only the account's owners can do this.".into(),
            )),
        }
    }

    /// Only the deployment's operators may go on.
    pub fn require_operator(&self) -> Result<(), CpError> {
        if self.operator {
            Ok(())
        } else {
            Err(CpError::Forbidden(
                "Only the deployment's operators can see this.".into(),
            ))
        }
    }
}

/// A new admin-API key (`mr_ak_…`).
fn admin_key() -> String {
    auth::generate_key().replacen(auth::KEY_PREFIX, crate::ADMIN_KEY_PREFIX, 1)
}

/// A key just created: the plaintext, shown once.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub name: String,
    pub key: String,
    pub admin: bool,
}

/// Normalises and checks an email address.
pub fn email(raw: &str) -> Result<String, CpError> {
    let email = raw.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(CpError::BadInput(format!(
            "`{}` is not an email address.",
            crate::echo(raw.trim())
        )))
    }
}

/// Checks a display name (account or key name).
pub fn name(raw: &str, what: &str) -> Result<String, CpError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(CpError::BadInput(format!(
            "The {what} must be 1 to 80 characters."
        )));
    }
    Ok(name.to_owned())
}

/// SHA-256 of a one-time token, hex: what is stored of invitation and
/// reset links.
fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl ControlPlane {
    /// Appends `event` to the log, then applies it here.
    pub async fn record(&self, event: Event) -> Result<Envelope, CpError> {
        self.record_as(Envelope::new(event)).await
    }

    async fn record_as(&self, envelope: Envelope) -> Result<Envelope, CpError> {
        self.log
            .append(
                envelope.event.subject(),
                &envelope.id.to_string(),
                &envelope.encode(),
            )
            .await?;
        self.projector.apply_now(&envelope).await?;
        Ok(envelope)
    }

    /// Blocks or unblocks `provider` for the member's account.
    pub async fn set_block(
        &self,
        member: &Member,
        provider: &str,
        blocked: bool,
    ) -> Result<(), CpError> {
        let provider: catalog::ProviderId = provider.parse().map_err(|_| {
            let known: Vec<&str> = catalog::ProviderId::ALL
                .iter()
                .map(|p| p.as_str())
                .collect();
            CpError::BadInput(format!(
                "`{}` is not a provider. Use one of: {}.",
                crate::echo(provider),
                known.join(", ")
            ))
        })?;
        let body = ProviderBlock {
            account: member.account,
            provider: provider.to_string(),
            by: Some(member.user),
        };
        self.record(if blocked {
            Event::ProviderBlocked(body)
        } else {
            Event::ProviderUnblocked(body)
        })
        .await?;
        Ok(())
    }

    /// Sets (or, with `None`, lifts) the daily spend limit.
    pub async fn set_limit(&self, member: &Member, limit: Option<Money>) -> Result<(), CpError> {
        if limit.is_some_and(|l| l < Money::ZERO) {
            return Err(CpError::BadInput(
                "The daily limit cannot be negative.".into(),
            ));
        }
        self.record(Event::DailyLimitSet(DailyLimitSet {
            account: member.account,
            limit,
        }))
        .await?;
        Ok(())
    }
}
