//! Members of an account: who they are, invitations (withdrawn or expired
//! links stop working), roles, and removal. An account always keeps at
//! least one owner.

use chrono::Utc;
use events::{
    AccountId, Event, InvitationWithdrawn, MemberInvited, MemberJoined, MemberRemoved,
    MemberRoleSet, Role, UserId,
};
use sqlx::Row;
use uuid::Uuid;

use super::{email, sha256_hex, Member};
use crate::error::CpError;
use crate::ControlPlane;

/// An open invitation, as its link's recipient sees it.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: Uuid,
    pub account: AccountId,
    pub account_name: String,
    pub email: String,
    pub role: Role,
}

impl ControlPlane {
    /// `user` as a member of `account`, if they are one.
    pub async fn member(
        &self,
        user: UserId,
        account: AccountId,
    ) -> Result<Option<Member>, CpError> {
        let row = sqlx::query(
            "SELECT m.email, m.role, a.name, u.session_epoch, u.operator FROM members m
             JOIN accounts a ON a.id = m.account JOIN users u ON u.id = m.user_id
             WHERE m.account = $1 AND m.user_id = $2",
        )
        .bind(account.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.store.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        let email: String = row.try_get("email")?;
        let operator: i64 = row.try_get("operator")?;
        Ok(Some(Member {
            user,
            operator: operator != 0 || self.operators.contains(&email),
            email,
            account,
            account_name: row.try_get("name")?,
            role: role.parse().map_err(CpError::Internal)?,
            session_epoch: row.try_get("session_epoch")?,
            via_admin_key: false,
        }))
    }

    /// Invites `email` as `role`; returns the link's token (shown once). The
    /// link works once, for that email, until it expires or is withdrawn.
    pub async fn invite(
        &self,
        owner: &Member,
        email_raw: &str,
        role: Role,
    ) -> Result<String, CpError> {
        owner.require_owner()?;
        let email = email(email_raw)?;
        let token = hex::encode(rand::random::<[u8; 32]>());
        let ttl =
            chrono::Duration::seconds(i64::try_from(self.invitation_ttl_s).unwrap_or(i64::MAX / 2));
        self.record(Event::MemberInvited(MemberInvited {
            account: owner.account,
            invitation: Uuid::new_v4(),
            email,
            role,
            by: owner.user,
            token_digest: sha256_hex(&token),
            expires_at: Some(Utc::now() + ttl),
        }))
        .await?;
        Ok(token)
    }

    /// The open invitation of `token`: not accepted, not withdrawn, not expired.
    pub async fn invitation(&self, token: &str) -> Result<Invitation, CpError> {
        let row = sqlx::query(
            "SELECT i.id, i.account, i.email, i.role, a.name FROM invitations i
             JOIN accounts a ON a.id = i.account
             WHERE i.token_digest = $1 AND i.accepted_by IS NULL AND i.withdrawn_at IS NULL
               AND (i.expires_at IS NULL OR i.expires_at > $2)",
        )
        .bind(sha256_hex(token))
        .bind(Utc::now().to_rfc3339())
        .fetch_optional(&self.store.pool)
        .await?
        .ok_or(CpError::NotFound)?;
        let parse = |e: String| CpError::Internal(e);
        Ok(Invitation {
            id: row
                .try_get::<String, _>("id")?
                .parse()
                .map_err(|e: uuid::Error| parse(e.to_string()))?,
            account: row
                .try_get::<String, _>("account")?
                .parse()
                .map_err(|e: uuid::Error| parse(e.to_string()))?,
            account_name: row.try_get("name")?,
            email: row.try_get("email")?,
            role: row.try_get::<String, _>("role")?.parse().map_err(parse)?,
        })
    }

    /// Accepts the invitation `token` as `user` (whose email it must be).
    pub async fn accept(
        &self,
        token: &str,
        user: UserId,
        user_email: &str,
    ) -> Result<AccountId, CpError> {
        let invitation = self.invitation(token).await?;
        if invitation.email != user_email {
            return Err(CpError::Forbidden(format!(
                "This invitation is for {}; log in as that user to accept it.",
                invitation.email
            )));
        }
        self.record(Event::MemberJoined(MemberJoined {
            account: invitation.account,
            user,
            email: invitation.email,
            role: invitation.role,
            invitation: Some(invitation.id),
        }))
        .await?;
        Ok(invitation.account)
    }

    /// Signs up a new user through an invitation (no account of their own).
    pub async fn join(
        &self,
        token: &str,
        password: String,
    ) -> Result<(UserId, AccountId), CpError> {
        let invited = self.invitation(token).await?.email;
        crate::passwords::check_rules(&password, &invited)?;
        let user = self.create_user(&invited, password).await?.ok_or_else(|| {
            CpError::Conflict(
                "This email already has a user: log in, then open the invitation link to accept it."
                    .into(),
            )
        })?;
        let account = self.accept(token, user, &invited).await?;
        Ok((user, account))
    }

    /// Withdraws an open invitation of the owner's account; its link stops working.
    pub async fn withdraw_invitation(&self, owner: &Member, id: &str) -> Result<(), CpError> {
        owner.require_owner()?;
        let invitation: Uuid = id.parse().map_err(|_| CpError::NotFound)?;
        let open: Option<String> = sqlx::query_scalar(
            "SELECT id FROM invitations WHERE account = $1 AND id = $2
               AND accepted_by IS NULL AND withdrawn_at IS NULL",
        )
        .bind(owner.account.to_string())
        .bind(invitation.to_string())
        .fetch_optional(&self.store.pool)
        .await?;
        if open.is_none() {
            return Err(CpError::NotFound);
        }
        self.record(Event::InvitationWithdrawn(InvitationWithdrawn {
            account: owner.account,
            invitation,
            by: owner.user,
        }))
        .await?;
        Ok(())
    }

    async fn owners(&self, account: AccountId) -> Result<i64, CpError> {
        Ok(
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM members WHERE account = $1 AND role = 'owner'",
            )
            .bind(account.to_string())
            .fetch_one(&self.store.pool)
            .await?,
        )
    }

    /// Changes a member's role; the last owner cannot step down.
    pub async fn set_role(&self, owner: &Member, user: UserId, role: Role) -> Result<(), CpError> {
        owner.require_owner()?;
        let target = self
            .member(user, owner.account)
            .await?
            .ok_or(CpError::NotFound)?;
        if target.role == Role::Owner
            && role == Role::Member
            && self.owners(owner.account).await? <= 1
        {
            return Err(CpError::Conflict(
                "An account needs at least one owner; make someone else owner first.".into(),
            ));
        }
        self.record(Event::MemberRoleSet(MemberRoleSet {
            account: owner.account,
            user,
            role,
            by: owner.user,
        }))
        .await?;
        Ok(())
    }

    /// Removes a member from the owner's account: their sessions there end
    /// at once, and the keys they created are revoked. The last owner
    /// cannot be removed.
    pub async fn remove_member(&self, owner: &Member, user: UserId) -> Result<(), CpError> {
        owner.require_owner()?;
        let target = self
            .member(user, owner.account)
            .await?
            .ok_or(CpError::NotFound)?;
        if target.role == Role::Owner && self.owners(owner.account).await? <= 1 {
            return Err(CpError::Conflict(
                "An account needs at least one owner; make someone else owner first.".into(),
            ));
        }
        self.record(Event::MemberRemoved(MemberRemoved {
            account: owner.account,
            user,
            by: owner.user,
        }))
        .await?;
        self.revoke_keys_of(owner.account, user, owner.user).await?;
        Ok(())
    }
}
