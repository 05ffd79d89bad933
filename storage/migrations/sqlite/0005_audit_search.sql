-- Free-text search (DESIGN §7): an FTS5 trigram index of each audit row's
-- searchable text (name, type, source, profile id, ip, props, context), so a
-- substring (an e-mail fragment, part of an id) is found through the index
-- instead of a LIKE over every row. External content: the text stays in
-- audit_log only, the index holds its trigrams. Telemetry copies are indexed
-- too: the dashboard searches every row.
CREATE VIRTUAL TABLE audit_search USING fts5(
    name, type, source, profile_id, ip_addr, props, context,
    content = 'audit_log', content_rowid = 'rowid', tokenize = 'trigram'
);

-- The index is filled behind the writer, not in its transaction: indexing a
-- row costs about seven times its insert (measured, docs/BENCHMARKS.md), which
-- would halve ingest. Rows up to ``upto`` (rowid) are indexed; the daemon and
-- `tuiaudit migrate` index the rest in committed chunks (storage/sqlite_search.py),
-- and a search reads the index for rows up to ``upto`` and scans the few above.
-- Rows stored before this migration start unindexed, so the same chunks build
-- the index for an existing store, with progress, resuming after an interrupt.
CREATE TABLE audit_search_state (
    upto INTEGER NOT NULL
);
INSERT INTO audit_search_state (upto) VALUES (0);

-- Rows at or below the watermark are kept in step in the writer's own
-- transaction when they are deleted or their text changes. An insert costs
-- nothing here (even a trigger that only tests the watermark doubled the cost
-- of an insert): a new row's rowid is above every rowid in the table, so above
-- the watermark, as long as the watermark never passes the largest rowid.
-- SQLite re-uses the largest rowid once that row is deleted, so a delete brings
-- the watermark down to the largest rowid left.
-- One trigger, two statements in this order (SQLite gives no order between
-- triggers): the row leaves the index while the watermark still covers it.
CREATE TRIGGER audit_search_delete AFTER DELETE ON audit_log
BEGIN
    INSERT INTO audit_search (audit_search, rowid, name, type, source, profile_id, ip_addr,
                              props, context)
    SELECT 'delete', old.rowid, old.name, old.type, old.source, old.profile_id, old.ip_addr,
           old.props, old.context
    WHERE old.rowid <= (SELECT upto FROM audit_search_state);
    UPDATE audit_search_state SET upto = (SELECT coalesce(max(rowid), 0) FROM audit_log)
    WHERE upto > (SELECT coalesce(max(rowid), 0) FROM audit_log);
END;
CREATE TRIGGER audit_search_update
AFTER UPDATE OF name, type, source, profile_id, ip_addr, props, context ON audit_log
WHEN old.rowid <= (SELECT upto FROM audit_search_state)
BEGIN
    INSERT INTO audit_search (audit_search, rowid, name, type, source, profile_id, ip_addr,
                              props, context)
    VALUES ('delete', old.rowid, old.name, old.type, old.source, old.profile_id, old.ip_addr,
            old.props, old.context);
    INSERT INTO audit_search (rowid, name, type, source, profile_id, ip_addr, props, context)
    VALUES (new.rowid, new.name, new.type, new.source, new.profile_id, new.ip_addr, new.props,
            new.context);
END;
