-- One row per API key instead of three (`key_spend`'s `life`, `m:…`, `d:…`):
-- a third of the upserts the ledger writes per key and batch. The row holds
-- the key's spend ever, and its spend in the latest UTC month and day it
-- spent in; an event of a later day starts that day's count (and a later
-- month's), an event of an earlier one counts only ever (and in its month,
-- when that is still the latest). What budgets read is the same as before
-- except across midnight when gateways' clocks disagree: for those seconds,
-- a late event of the day that ended counts only in the month and ever.
CREATE TABLE key_totals (
    account TEXT NOT NULL,
    key_id TEXT NOT NULL,
    life BIGINT NOT NULL,
    -- 'YYYY-MM', '' before any spend.
    month TEXT NOT NULL,
    month_spent BIGINT NOT NULL,
    -- 'YYYY-MM-DD', '' before any spend.
    day TEXT NOT NULL,
    day_spent BIGINT NOT NULL,
    PRIMARY KEY (account, key_id)
);

INSERT INTO key_totals (account, key_id, life, month, month_spent, day, day_spent)
SELECT account, key_id,
       COALESCE(SUM(CASE WHEN period = 'life' THEN spent END), 0),
       COALESCE(MAX(CASE WHEN period LIKE 'm:%' THEN substr(period, 3) END), ''), 0,
       COALESCE(MAX(CASE WHEN period LIKE 'd:%' THEN substr(period, 3) END), ''), 0
FROM key_spend
GROUP BY account, key_id;

UPDATE key_totals SET
    month_spent = COALESCE((SELECT s.spent FROM key_spend s
                            WHERE s.account = key_totals.account AND s.key_id = key_totals.key_id
                              AND s.period = 'm:' || key_totals.month), 0),
    day_spent = COALESCE((SELECT s.spent FROM key_spend s
                          WHERE s.account = key_totals.account AND s.key_id = key_totals.key_id
                            AND s.period = 'd:' || key_totals.day), 0);

DROP TABLE key_spend;
