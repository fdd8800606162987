-- Card payments: deposits (for refunds and reconciliation against Stripe)
-- and each account's auto-recharge, as the ledger folds them from events.

-- Every settled deposit, by its payment (a Stripe PaymentIntent).
CREATE TABLE deposits (
    payment TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    credits BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    -- The auto-recharge it settled, if it was one.
    recharge TEXT,
    at TEXT NOT NULL
);
CREATE INDEX deposits_by_account ON deposits (account, at);

-- Each account's auto-recharge: its settings, its saved card, and the
-- recharge in flight (at most one: started when usage took the balance
-- under the threshold, cleared when it settles or is declined).
CREATE TABLE auto_recharge (
    account TEXT PRIMARY KEY,
    enabled BIGINT NOT NULL,
    threshold BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    customer TEXT,
    payment_method TEXT,
    brand TEXT,
    last4 TEXT,
    in_flight TEXT,
    -- The credits the recharge in flight buys, fixed when it starts.
    charging BIGINT NOT NULL DEFAULT 0,
    declines BIGINT NOT NULL,
    retry_at TEXT,
    last_decline TEXT
);
