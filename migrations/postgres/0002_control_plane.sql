-- The control plane: users, members, invitations, API keys and provider
-- blocks. Users and their password hashes are the control plane's own
-- records; everything else is the projection of access events
-- (`events.access`), idempotent by event id.

-- Which key served each request, for the keys page's "last used".
ALTER TABLE requests ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
CREATE INDEX requests_by_account_at ON requests (account, at);
CREATE INDEX requests_by_key ON requests (account, key_id, at);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    -- argon2id in PHC string form (parameters included).
    password_hash TEXT NOT NULL,
    -- Sessions carry the epoch they were issued in; logging out bumps it,
    -- which ends every session of the user.
    session_epoch BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

-- Access events already folded here.
CREATE TABLE access_applied (
    event_id TEXT PRIMARY KEY
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    opened_at TEXT NOT NULL
);

CREATE TABLE members (
    account TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    PRIMARY KEY (account, user_id)
);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    -- SHA-256 of the link's token, hex; the token itself is never stored.
    token_digest TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    accepted_by TEXT
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    last_four TEXT NOT NULL,
    -- 'api' keys call the gateway; 'admin' keys call the JSON admin API.
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE provider_blocks (
    account TEXT NOT NULL,
    provider TEXT NOT NULL,
    PRIMARY KEY (account, provider)
);
