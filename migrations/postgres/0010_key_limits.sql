-- An API key's own limits (`key_limits_set`): expiry, requests and tokens
-- per minute, and the tiers or models it may ask for ('' allows all;
-- otherwise one per line). NULL restricts nothing.
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;
ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
ALTER TABLE api_keys ADD COLUMN allowed TEXT NOT NULL DEFAULT '';
