-- The ledger's projections of the event log. Amounts are nano-dollars.

-- Every event the ledger has applied, by id: applying one twice changes nothing.
CREATE TABLE applied_events (
    event_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    at TEXT NOT NULL
);

-- Events the ledger could not read (a newer build wrote them); never skipped silently.
CREATE TABLE rejected_events (
    seq INTEGER PRIMARY KEY,
    error TEXT NOT NULL
);

-- The double-entry journal: every event's lines debit and credit the same total.
CREATE TABLE journal (
    event_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    at TEXT NOT NULL,
    book TEXT NOT NULL,
    account TEXT NOT NULL,
    debit INTEGER NOT NULL,
    credit INTEGER NOT NULL,
    memo TEXT NOT NULL,
    PRIMARY KEY (event_id, line)
);

-- Per account: spendable credits, the daily limit, and a version bumped by every change.
CREATE TABLE balances (
    account TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    balance INTEGER NOT NULL,
    daily_limit INTEGER,
    version INTEGER NOT NULL
);

-- Spend and requests per account and UTC day.
CREATE TABLE day_spend (
    account TEXT NOT NULL,
    day TEXT NOT NULL,
    spent INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (account, day)
);

-- The highest origin sequence applied per account and gateway.
CREATE TABLE origins (
    account TEXT NOT NULL,
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (account, gateway)
);

-- Served requests, for the dashboard.
CREATE TABLE requests (
    event_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    total_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX requests_by_account ON requests (account, at);
