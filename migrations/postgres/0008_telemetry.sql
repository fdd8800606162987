-- Trace destinations as the dashboard lists them (the control plane's
-- projection of telemetry_destination_* events; header values only sealed).
CREATE TABLE telemetry_destinations (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    preset TEXT,
    protocol TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    header_names TEXT NOT NULL,
    headers_sealed TEXT NOT NULL,
    sampling TEXT NOT NULL,
    capture_content INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX telemetry_destinations_by_account ON telemetry_destinations (account);

-- The exporter's own state: the destinations it delivers to (the event
-- body, headers sealed), each one's backlog of usage events not yet
-- delivered, and how delivery went.
CREATE TABLE export_destinations (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE export_outbox (
    id BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    event TEXT NOT NULL,
    -- The request's text (content_recorded), for a destination capturing it.
    content TEXT
);
CREATE INDEX export_outbox_by_destination ON export_outbox (destination, id);
CREATE TABLE export_status (
    destination TEXT PRIMARY KEY,
    exported BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    dropped BIGINT NOT NULL DEFAULT 0,
    last_success_at TEXT,
    last_error_at TEXT,
    last_error TEXT
);
-- Usage events already queued (a gateway's journal may append one again
-- after a crash), remembered for a week.
CREATE TABLE export_seen (
    event_id TEXT PRIMARY KEY,
    seen_at TEXT NOT NULL
);
CREATE INDEX export_seen_by_time ON export_seen (seen_at);
