-- session_aggregates in 256-row granules (issue 18), as events in 0011.
--
-- The session list finds its page from one merged column, then merges every rollup of the
-- page's sessions only (apiary.store._queries.plan_session_rows). Those sessions are
-- scattered over the key space, so at 8192 rows a granule the 50 sessions of a page read
-- (and deserialize the uniqExact states of) every granule of a 100k-session project:
-- measured at 1M events, 72 ms of CPU at 8192 against 18 at 256 (the page's own look-up
-- 30 -> 21 ms). The setting cannot be altered, so the table is rebuilt the way 0011
-- rebuilds events: the view dropped, a new table filled with INSERT ... SELECT (states are
-- copied as they are; insert_deduplicate = 0 so a re-run is never taken for a repeated
-- block), swapped in, the old one dropped, the view created again with 0005's definition.
-- session_aggregates always holds every rollup and session_aggregates_0012 is dropped
-- first, so an interrupted run simply runs again. The deduplication window and fsync
-- settings are 0009's.
DROP VIEW IF EXISTS {db}.session_aggregates_mv;

DROP TABLE IF EXISTS {db}.session_aggregates_0012;

CREATE TABLE {db}.session_aggregates_0012
(
    project_id        LowCardinality(String),
    session_id        String,
    event_count       AggregateFunction(uniqExact, String),
    error_count       AggregateFunction(uniqExactIf, String, UInt8),
    model_call_count  AggregateFunction(uniqExactIf, String, UInt8),
    start_time        AggregateFunction(minIf, DateTime64(6, 'UTC'), UInt8),
    end_time          AggregateFunction(maxIf, DateTime64(6, 'UTC'), UInt8),
    cost              SimpleAggregateFunction(sum, Float64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    total_tokens      SimpleAggregateFunction(sum, UInt64),
    session_name      AggregateFunction(argMaxIf, String, UInt64, UInt8),
    source            AggregateFunction(argMaxIf, String, UInt64, UInt8),
    user_properties   AggregateFunction(argMaxIf, String, UInt64, UInt8),
    last_update       SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, session_id)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 10000,
    fsync_after_insert = 1, fsync_part_directory = 1;

INSERT INTO {db}.session_aggregates_0012
SELECT * FROM {db}.session_aggregates
SETTINGS insert_deduplicate = 0;

EXCHANGE TABLES {db}.session_aggregates AND {db}.session_aggregates_0012;

DROP TABLE IF EXISTS {db}.session_aggregates_0012;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.session_aggregates_mv TO {db}.session_aggregates AS
SELECT
    project_id,
    session_id,
    uniqExactState(event_id) AS event_count,
    uniqExactIfState(event_id, toUInt8(ifNull(error, '') != '')) AS error_count,
    uniqExactIfState(event_id, toUInt8(event_type = 'model')) AS model_call_count,
    minIfState(start_time, toUInt8(toUnixTimestamp64Micro(start_time) > 0)) AS start_time,
    maxIfState(end_time, toUInt8(toUnixTimestamp64Micro(end_time) > 0)) AS end_time,
    sumIf(rollup_cost, event_type != 'session') AS cost,
    toUInt64(sumIf(rollup_prompt_tokens, event_type != 'session')) AS prompt_tokens,
    toUInt64(sumIf(rollup_completion_tokens, event_type != 'session')) AS completion_tokens,
    toUInt64(sumIf(rollup_total_tokens, event_type != 'session')) AS total_tokens,
    argMaxIfState(event_name, version, toUInt8(event_type = 'session')) AS session_name,
    argMaxIfState(source, version, toUInt8(event_type = 'session')) AS source,
    argMaxIfState(user_properties, version, toUInt8(event_type = 'session')) AS user_properties,
    max(inserted_at) AS last_update
FROM {db}.events
GROUP BY project_id, session_id;
