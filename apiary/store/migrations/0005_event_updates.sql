-- Updates of events (PUT /events), and session rollups that updates do not double count.
--
-- event_updates keeps every patch a writer received, so none is ever lost: a patch that
-- arrives before its event waits here until the event lands, and a writer that restarts
-- finds recent patches again. A patch is identified by (event_id, version, patch_id);
-- a redelivered patch is the same row again, collapsed by ReplacingMergeTree (readers
-- de-duplicate too). patch holds the patch's fields as a JSON object.
CREATE TABLE IF NOT EXISTS {db}.event_updates
(
    org_id        LowCardinality(String),
    workspace_id  LowCardinality(String),
    project_id    LowCardinality(String),
    event_id      String,
    version       UInt64,
    patch_id      String,
    patch         String CODEC(ZSTD(1)),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, event_id, version, patch_id);

-- What each events row adds to its session's cost and token sums. A first version adds
-- its own figures (the defaults); a merged version written for an update carries the
-- difference to the version it replaces (often 0), so updates never add an event's cost
-- twice. Token deltas may be negative: they are Int64 here and fold into the UInt64 sums
-- of session_aggregates modulo 2^64, which gives the exact total whenever it is >= 0.
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS rollup_cost Float64 DEFAULT cost;
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS rollup_prompt_tokens Int64
    DEFAULT toInt64(prompt_tokens);
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS rollup_completion_tokens Int64
    DEFAULT toInt64(completion_tokens);
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS rollup_total_tokens Int64
    DEFAULT toInt64(total_tokens);

-- The session rollups now sum the rollup_* columns (0002 summed cost and tokens).
DROP VIEW IF EXISTS {db}.session_aggregates_mv;

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
