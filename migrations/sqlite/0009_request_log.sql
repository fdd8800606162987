-- The request log (dashboard `/requests`, `GET /api/v1/requests`): what a
-- row needs to be filtered and listed without reading its usage event.
ALTER TABLE requests ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat';
ALTER TABLE requests ADD COLUMN tier TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN auto_score INTEGER;
ALTER TABLE requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN first_byte_ms BIGINT;
-- The OpenAI `user` field, '' when absent.
ALTER TABLE requests ADD COLUMN end_user TEXT NOT NULL DEFAULT '';
-- The request's tags, one per line ('' when none); `request_tags` indexes them.
ALTER TABLE requests ADD COLUMN tags TEXT NOT NULL DEFAULT '';

-- The log's order, newest first, with the event id breaking ties: a page
-- after a cursor is one index range, with no sort (replaces (account, at)).
DROP INDEX IF EXISTS requests_by_account_at;
CREATE INDEX requests_log_order ON requests (account, at, event_id);

-- Paging an end user's requests; only attributed rows pay for it.
CREATE INDEX requests_by_end_user ON requests (account, end_user, at) WHERE end_user <> '';

-- One row per request and tag: filtering by a tag reads only its requests,
-- newest first, however rare the tag is.
CREATE TABLE request_tags (
    account TEXT NOT NULL,
    tag TEXT NOT NULL,
    at TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (account, tag, at, event_id)
);
