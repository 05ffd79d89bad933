-- Audit archive and retention (DESIGN §9).
-- The archive queue: full rows not yet archived, oldest first. The predicate is
-- exactly the archiver's WHERE clause, so the planner takes this small index.
CREATE INDEX audit_log_archive_queue ON audit_log (created_at, id)
    WHERE archived_at IS NULL AND substr(source, 1, 10) <> 'telemetry:';
-- Archived rows waiting for the archive GC.
CREATE INDEX audit_log_archived ON audit_log (created_at, id)
    WHERE archived_at IS NOT NULL;

-- One row per archive attempt (a chunk POST), like ship_ledger for telemetry.
-- A successful attempt is written in the transaction that marks its rows.
CREATE TABLE archive_log (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    ended_at    TEXT NOT NULL,
    status      TEXT NOT NULL,
    events      INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    body_sha256 TEXT NOT NULL,
    http_status INTEGER,
    error_class TEXT,
    error       TEXT,
    latency_ms  REAL,
    sink        TEXT,
    holder      TEXT
);

-- Full audit rows deleted, by reason: 'archived' (archive GC), 'retention'.
CREATE TABLE audit_deletions (
    reason TEXT PRIMARY KEY NOT NULL,
    count  INTEGER NOT NULL DEFAULT 0
);
