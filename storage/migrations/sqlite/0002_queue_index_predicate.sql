-- A GLOB predicate let the planner prefer the (source, created_at) index plus a
-- sort for queue pages; substr() has no range form, so the partial index wins.
DROP INDEX audit_log_telemetry_queue;
CREATE INDEX audit_log_telemetry_queue ON audit_log (created_at, id)
    WHERE substr(source, 1, 10) = 'telemetry:';
-- With id in the key, a source filter pages newest-first without a sort step.
DROP INDEX audit_log_source_created;
CREATE INDEX audit_log_source_created ON audit_log (source, created_at, id);
