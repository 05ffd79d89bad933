-- tuiaudit store, SQLite. Timestamps: fixed-width UTC text YYYY-MM-DDTHH:MM:SS.ffffffZ
-- (text order = time order); ids: canonical UUID text; JSON: compact text.

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL,
    source      TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    ip_addr     TEXT NOT NULL,
    props       TEXT NOT NULL DEFAULT '{}',
    context     TEXT NOT NULL DEFAULT '{}',
    tracked_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    archived_at TEXT
);
CREATE INDEX audit_log_source_created ON audit_log (source, created_at);
CREATE INDEX audit_log_created_id ON audit_log (created_at, id);
-- The telemetry queue in shipping order (DESIGN §5): pages, GC and the cap use it.
CREATE INDEX audit_log_telemetry_queue ON audit_log (created_at, id)
    WHERE source GLOB 'telemetry:*';

CREATE TABLE server_prop (
    id      TEXT PRIMARY KEY NOT NULL,
    content TEXT NOT NULL
);

CREATE TABLE ship_ledger (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    events        INTEGER NOT NULL,
    raw_bytes     INTEGER NOT NULL,
    encoded_bytes INTEGER NOT NULL,
    body_sha256   TEXT NOT NULL,
    batch_key     TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    http_status   INTEGER,
    error_class   TEXT,
    error         TEXT,
    latency_ms    REAL,
    sink          TEXT
);
CREATE INDEX ship_ledger_status ON ship_ledger (status);

CREATE TABLE quarantine (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    type           TEXT NOT NULL,
    source         TEXT NOT NULL,
    profile_id     TEXT NOT NULL,
    ip_addr        TEXT NOT NULL,
    props          TEXT NOT NULL DEFAULT '{}',
    context        TEXT NOT NULL DEFAULT '{}',
    tracked_at     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    archived_at    TEXT,
    reason         TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
);

CREATE TABLE drops (
    reason TEXT PRIMARY KEY NOT NULL,
    count  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE daemon_state (
    daemon_id    TEXT PRIMARY KEY NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    listen       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    flags        TEXT NOT NULL DEFAULT '[]',
    paused       INTEGER NOT NULL DEFAULT 0,
    next_run_at  TEXT,
    stopped_at   TEXT,
    info         TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE command (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    args        TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    claimed_by  TEXT,
    finished_at TEXT,
    result      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX command_status ON command (status, id);

CREATE TABLE ship_lease (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE webhook (
    id          INTEGER PRIMARY KEY,
    url         TEXT NOT NULL,
    secret      TEXT,
    enabled     INTEGER NOT NULL DEFAULT 1,
    event_names TEXT NOT NULL DEFAULT '[]',
    retries     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);

CREATE TABLE webhook_delivery (
    id           INTEGER PRIMARY KEY,
    webhook_id   INTEGER NOT NULL REFERENCES webhook (id) ON DELETE CASCADE,
    event        TEXT NOT NULL,
    batch_key    TEXT,
    due_at       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL DEFAULT 'pending',
    http_status  INTEGER,
    error        TEXT,
    latency_ms   REAL,
    delivered_at TEXT
);
CREATE INDEX webhook_delivery_due ON webhook_delivery (status, due_at);
CREATE INDEX webhook_delivery_batch ON webhook_delivery (webhook_id, batch_key);
