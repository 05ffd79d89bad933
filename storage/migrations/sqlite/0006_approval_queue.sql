-- Approval mode (DESIGN §10): the bodies waiting for a person's approval.
-- A batch is kept as its row ids and rebuilt (its SHA-256 verified) before it
-- is sent; a report keeps its exact body, since its counters move.
CREATE TABLE approval_queue (
    seq         INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    policy      TEXT NOT NULL,
    batch_key   TEXT NOT NULL,
    ids         TEXT NOT NULL,
    body        TEXT,
    events      INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    first_day   TEXT,
    last_day    TEXT,
    queued_at   TEXT NOT NULL,
    approved_at TEXT
);
