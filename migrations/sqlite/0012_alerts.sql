-- Alerts: each account's rules (`alert_rules_set`, as JSON), the alerts
-- fired (once per crossing: `dedupe` names it, e.g. `daily:2026-12-04:80`),
-- and their deliveries, retried until delivered or given up.
CREATE TABLE alert_rules (
    account TEXT PRIMARY KEY,
    rules TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    dedupe TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (account, dedupe)
);
CREATE INDEX alerts_by_account ON alerts (account, at);

-- One row per alert and destination: `webhook` (target: the URL) or
-- `email` (target: the address); state `pending`, `delivered` or `failed`.
CREATE TABLE alert_deliveries (
    alert TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at TEXT NOT NULL,
    last_error TEXT NOT NULL,
    PRIMARY KEY (alert, channel, target)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_at);
