-- requests_by_account (0001) and requests_by_account_at (0002) index the same
-- columns: every request row paid for both. The second stays.
DROP INDEX IF EXISTS requests_by_account;
