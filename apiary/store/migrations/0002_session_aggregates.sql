-- Per-session rollups, kept up to date by a materialized view on every insert into events.
--
-- Duplicates: counts are uniqExact states over event_id, so a redelivered or re-versioned
-- event counts once; min/max are idempotent. Sums of cost and tokens are plain sums: they
-- are exact only because the writer never inserts an event that is already stored with
-- the same version (it checks redelivered batches against events). A *new* version of an
-- event (an update) adds its cost and tokens again; read events FINAL for exact figures.
-- Cost and tokens are summed over non-session events only: a session event's own figures
-- would be a rollup of its children.
CREATE TABLE IF NOT EXISTS {db}.session_aggregates
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
ORDER BY (project_id, session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.session_aggregates_mv TO {db}.session_aggregates AS
SELECT
    project_id,
    session_id,
    uniqExactState(event_id) AS event_count,
    uniqExactIfState(event_id, toUInt8(ifNull(error, '') != '')) AS error_count,
    uniqExactIfState(event_id, toUInt8(event_type = 'model')) AS model_call_count,
    minIfState(start_time, toUInt8(toUnixTimestamp64Micro(start_time) > 0)) AS start_time,
    maxIfState(end_time, toUInt8(toUnixTimestamp64Micro(end_time) > 0)) AS end_time,
    sumIf(cost, event_type != 'session') AS cost,
    sumIf(prompt_tokens, event_type != 'session') AS prompt_tokens,
    sumIf(completion_tokens, event_type != 'session') AS completion_tokens,
    sumIf(total_tokens, event_type != 'session') AS total_tokens,
    argMaxIfState(event_name, version, toUInt8(event_type = 'session')) AS session_name,
    argMaxIfState(source, version, toUInt8(event_type = 'session')) AS source,
    argMaxIfState(user_properties, version, toUInt8(event_type = 'session')) AS user_properties,
    max(inserted_at) AS last_update
FROM {db}.events
GROUP BY project_id, session_id;
