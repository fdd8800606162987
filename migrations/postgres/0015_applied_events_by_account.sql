-- An account's billing history reads its non-usage events (deposits, fees,
-- refunds, grants): since usage is claimed by its request row (0014), these
-- are all `applied_events` holds, so indexing them by account is cheap for
-- the ledger and turns the history's scan of the whole journal into a
-- look-up of the account's few events.
CREATE INDEX applied_events_by_account ON applied_events (account);
