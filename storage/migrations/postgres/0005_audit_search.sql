-- tuiaudit: outside-transaction
-- Free-text search and the dashboard's filters (DESIGN §7). The indexes are built
-- with CREATE INDEX CONCURRENTLY on a large audit_log (ingest goes on meanwhile),
-- which cannot run inside a transaction: the migration runner runs this file one
-- statement at a time, shows the build's progress, and drops an index an
-- interrupted build left invalid before building it again. On a small table it
-- runs the same statements, without CONCURRENTLY, in one transaction.

-- The text a free-text search looks in: one expression, so one GIN index of its
-- trigrams (pg_trgm) answers ILIKE '%needle%'. The unit separator between the
-- fields keeps a match from spanning two of them (a needle holding it is
-- searched field by field, without the index).
CREATE OR REPLACE FUNCTION tuiaudit_search_text(
    name text, type text, source text, profile_id uuid, ip_addr inet, props jsonb, context jsonb
) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT name || E'\x1f' || type || E'\x1f' || source || E'\x1f' || profile_id::text
        || E'\x1f' || host(ip_addr) || E'\x1f' || props::text || E'\x1f' || context::text
$$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_search ON audit_log USING gin (
    tuiaudit_search_text(name, type, source, profile_id, ip_addr, props, context)
    @TRGM@.gin_trgm_ops
);

-- Field filters page newest first with id as the tie-breaker (keyset), like the
-- SQLite store's (source, created_at, id): name:, type:, profile and source.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_name_created ON audit_log (name, created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_type_created ON audit_log (type, created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_profile_created
    ON audit_log (profile_id, created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_source_created_id
    ON audit_log (source, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS audit_log_source_created;

-- Statistics of the new search expression: without them the planner guesses
-- every free text rare and reads all the matches of a common one to sort them,
-- instead of walking the created_at index for a page.
ANALYZE audit_log;
