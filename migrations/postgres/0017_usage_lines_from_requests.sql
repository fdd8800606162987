-- A usage event's two journal lines (the account's credits debited and the
-- providers' payable credited, both by its cost, with the request id, model
-- and provider as the memo) said again what its request row says, and were
-- 44% of the bytes the ledger wrote a request. They are read from the
-- request row now: `journal` is a view over the lines written as rows
-- (`journal_posted`: every event's but usage's) and two lines per request
-- with a cost, the same event ids, line numbers, times, amounts and memos
-- as the rows they replace, which are deleted. Free usage has no lines, as
-- before.
ALTER TABLE journal RENAME TO journal_posted;

DELETE FROM journal_posted WHERE event_id IN (SELECT event_id FROM requests);

CREATE VIEW journal AS
SELECT event_id, line, at, book, account, debit, credit, memo FROM journal_posted
UNION ALL
SELECT event_id, 0, at, 'customer_credits', account, cost, 0,
       request_id || ' ' || model || ' via ' || provider
FROM requests WHERE cost <> 0
UNION ALL
SELECT event_id, 1, at, 'provider_payable', account, 0, cost,
       request_id || ' ' || model || ' via ' || provider
FROM requests WHERE cost <> 0;
