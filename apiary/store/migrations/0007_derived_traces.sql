-- Traces a writer linked to their own session because no span had named one yet.
--
-- A span that names no session takes its trace's session; when none is known, the writer
-- links it to a session derived from the trace id (apiary.enrich.session_id_for_trace) and
-- records the trace here. Should a later span of the trace (typically its root, exported
-- last) name a session, the writer finds the trace here and moves the events stored under
-- the derived session into the named one (apiary.actors._relink). Rows are small and
-- looked up by trace, hence the fine index granularity; a root that arrives more than
-- 7 days after its children is not waited for.
CREATE TABLE IF NOT EXISTS {db}.derived_traces
(
    project_id  LowCardinality(String),
    trace_id    String,
    session_id  String,
    linked_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(linked_at)
ORDER BY (project_id, trace_id)
TTL toDateTime(linked_at) + INTERVAL 7 DAY
SETTINGS index_granularity = 256;
