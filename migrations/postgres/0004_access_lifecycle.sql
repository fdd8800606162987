-- The life of members, invitations, keys and passwords after their creation.

-- Who created each key: an admin key acts with its creator's current role.
ALTER TABLE api_keys ADD COLUMN created_by TEXT;

-- Invitations can be withdrawn, and expire.
ALTER TABLE invitations ADD COLUMN withdrawn_at TEXT;
ALTER TABLE invitations ADD COLUMN expires_at TEXT;

-- A user given a password (the first account's) must choose their own.
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
-- Operators see the deployment's health (`/operator`).
ALTER TABLE users ADD COLUMN operator BIGINT NOT NULL DEFAULT 0;

-- One-time links an operator prints to reset a user's password; only the
-- token's SHA-256 is kept.
CREATE TABLE password_resets (
    token_digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
