-- Where usage came from, so the gateways' own spend and lost usage can be
-- told exactly.

-- Which gateway numbered each request, and its number.
ALTER TABLE requests ADD COLUMN gateway TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN origin_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX requests_by_origin ON requests (gateway, origin_seq);

-- Per account and gateway process: how many of its usage events are applied
-- (published in the account's state, so the gateway adds only the rest).
CREATE TABLE origin_instances (
    account TEXT NOT NULL,
    instance TEXT NOT NULL,
    events BIGINT NOT NULL,
    last_at TEXT NOT NULL,
    PRIMARY KEY (account, instance)
);

-- Per gateway: its highest origin sequence applied and how many of its
-- events are. The ledger's check keeps `verified_seq` (every number up to it
-- has its event) and `missing` (numbers above it, taken long enough ago that
-- their request must have ended, still without an event).
CREATE TABLE gateway_sequences (
    gateway TEXT PRIMARY KEY,
    max_seq BIGINT NOT NULL,
    events BIGINT NOT NULL,
    last_at TEXT NOT NULL,
    verified_seq BIGINT NOT NULL DEFAULT 0,
    missing BIGINT NOT NULL DEFAULT 0,
    checked_at TEXT
);
