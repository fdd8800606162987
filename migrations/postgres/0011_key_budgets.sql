-- Spend per API key and period, for key budgets: `life`, `m:YYYY-MM` and
-- `d:YYYY-MM-DD` (UTC), folded by the ledger with the account's spend and
-- published in the account state the gateways enforce.
CREATE TABLE key_spend (
    account TEXT NOT NULL,
    key_id TEXT NOT NULL,
    period TEXT NOT NULL,
    spent BIGINT NOT NULL,
    PRIMARY KEY (account, key_id, period)
);

-- A key's budget (`key_limits_set`): nano-dollars per `period` (`daily`,
-- `monthly`, `lifetime`); NULL for none.
ALTER TABLE api_keys ADD COLUMN budget BIGINT;
ALTER TABLE api_keys ADD COLUMN budget_period TEXT;
