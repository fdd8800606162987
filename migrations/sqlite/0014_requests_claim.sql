-- A usage event's claim is its request row (`requests.event_id` is its
-- key), not a row of its own in `applied_events`: a row and an index entry
-- fewer per request for the ledger to write. `seq` is the event's log
-- position, which `applied_events` held for it. Every other event keeps
-- its `applied_events` row; the events applied are the two tables' ids.
-- The update rewrites each request row once, before the ledger starts.
ALTER TABLE requests ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

UPDATE requests SET seq = COALESCE(
    (SELECT a.seq FROM applied_events a WHERE a.event_id = requests.event_id), 0);

DELETE FROM applied_events
WHERE kind = 'usage_recorded'
  AND event_id IN (SELECT event_id FROM requests);
