-- Per project: which event types and names exist, how many events each, first/last seen.
-- event_count is a uniq state over event_id (exact up to 65536 distinct ids, then an
-- adaptive sample with ~1% error): a redelivered event counts once, and the state stays
-- small for names with millions of events (uniqExact would keep every id).
CREATE TABLE IF NOT EXISTS {db}.project_event_details
(
    project_id   LowCardinality(String),
    event_type   LowCardinality(String),
    event_name   String,
    event_count  AggregateFunction(uniq, String),
    first_seen   SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_seen    SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, event_type, event_name);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.project_event_details_mv TO {db}.project_event_details AS
SELECT
    project_id,
    event_type,
    event_name,
    uniqState(event_id) AS event_count,
    min(start_time) AS first_seen,
    max(start_time) AS last_seen
FROM {db}.events
GROUP BY project_id, event_type, event_name;
