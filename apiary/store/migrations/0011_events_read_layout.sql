-- The events table's read layout (issue 18): finer granules and attribute arrays.
--
-- Why this key. The sorting key stays (project_id, session_id, event_id): it is the
-- event's identity, the key ReplacingMergeTree collapses versions on, so every column in
-- it must be the same in every version of an event. Time is not (a re-sent span may carry
-- another start_time, and would then be stored twice), so neither ORDER BY nor PARTITION
-- BY can lead with it. Reads therefore find their rows by session (a primary-key range:
-- the session tree, the writer's already-stored checks, the session sums) or by one pass
-- over the project's light columns, and collapse versions with FINAL over those columns
-- only: an export first finds its page's (session_id, event_id) from the keys, start_time
-- and the columns its filters read, with the total in the same pass (count() OVER ()),
-- then reads the wide columns of just those events by primary key (apiary.store._queries).
--
-- Why index_granularity 256 (was 8192). Reading a page's events by key decompresses one
-- granule per event's session, and at 8192 rows a granule is ~10 MB of JSON text.
-- Measured at 1M events (bench rows of ~1.2 KiB), fetching 100 events of 77 sessions:
-- 246 ms of CPU at 8192, 117 at 1024, 88 at 256; a session tree 16 -> 10 ms. The skip
-- indexes keep 8192 rows an index granule (GRANULARITY 32), as before: their cost on
-- insert and what they skip stay the same. The table
-- setting cannot be altered, hence a new table: created beside the old one, filled with
-- INSERT ... SELECT (insert_deduplicate = 0: a re-run must never be taken for a repeated
-- block and dropped), swapped in with EXCHANGE TABLES, the old one dropped; the three
-- materialized views are dropped first and created again on the new table, with the same
-- definitions as before (0003, 0004, 0005). Every step may run again: `events` always
-- holds every row, and events_0011 is dropped first (a half-filled copy, or after the
-- swap the old rows), so an interrupted migration simply runs again from the top
-- (tests/store/test_events_layout_migration.py). Moving 1M events took ~20 s.
--
-- Why attribute arrays. A nested filter (metadata.app.tenant is tenant-7) parsed the whole
-- JSON text of every row (3.7 s at 1M events in the issue). Each row now also holds the
-- scalar values of config, metadata, metrics, feedback and user_properties up to 3 keys
-- deep: attr_keys ('metadata.app.tenant'), attr_values (the value as the nested filter
-- reads it: strings unescaped, numbers and booleans as their JSON text) and attr_opaque
-- (paths whose value is an object, an array, a string over 256 characters, or deeper); a
-- filter uses them only for paths no row of the project holds opaque, so it means exactly
-- what the JSON route means (apiary.store._filters, tests/store/test_attribute_filters.py).
-- The writer builds them with the row (apiary.store._attributes): computing them here, as
-- MATERIALIZED columns, measured +10 us a row of ClickHouse CPU on insert (INSERT ... SELECT
-- of 200k bench rows: 5-8 us a row without them), far over the 10 % an insert may grow;
-- stored ready-made they cost ~1.5 us a row, and a DEFAULT expression would be evaluated
-- on every insert even when the columns are given (measured: 13 -> 21 us a row). This
-- migration computes them in SQL for the rows it moves, walking the JSON with the very
-- functions the filter uses, extracting children from the column by their key chain,
-- never by re-parsing a parent's
-- text (a re-serialized -0.0 would read back as 0); tests/store/
-- test_events_layout_migration.py checks they agree with the writer's value for value. A
-- table encoded before this migration (a message still in the stream) gets them from
-- EventStore.insert_arrow. attr_values is LZ4, not ZSTD: a filter reads all of it,
-- and decompressing it was most of the filter's cost (has() over 1M rows: 176 -> 69 ms of
-- CPU; 14 -> 30 MB on disk). JSON-type columns were not used: their typed values would not
-- give back the filter's text of a number exactly, and parsing into them on insert costs
-- more than these arrays.


DROP VIEW IF EXISTS {db}.session_aggregates_mv;

DROP VIEW IF EXISTS {db}.event_schemas_mv;

DROP VIEW IF EXISTS {db}.project_event_details_mv;

DROP TABLE IF EXISTS {db}.events_0011;

CREATE TABLE {db}.events_0011
(
    org_id            LowCardinality(String),
    workspace_id      LowCardinality(String),
    project_id        LowCardinality(String),
    session_id        String,
    event_id          String,
    parent_id         String,
    children_ids      Array(String),
    event_type        LowCardinality(String),
    event_name        String,
    source            LowCardinality(String),
    start_time        DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    end_time          DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    duration          Float64,
    error             Nullable(String) CODEC(ZSTD(1)),
    config            String CODEC(ZSTD(1)),
    inputs            String CODEC(ZSTD(1)),
    outputs           String CODEC(ZSTD(1)),
    metadata          String CODEC(ZSTD(1)),
    metrics           String CODEC(ZSTD(1)),
    feedback          String CODEC(ZSTD(1)),
    user_properties   String CODEC(ZSTD(1)),
    model             LowCardinality(String),
    provider          LowCardinality(String),
    prompt_tokens     UInt64,
    completion_tokens UInt64,
    total_tokens      UInt64,
    cost              Float64,
    trace_id          String,
    span_id           String,
    version           UInt64,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    rollup_cost              Float64 DEFAULT cost,
    rollup_prompt_tokens     Int64 DEFAULT toInt64(prompt_tokens),
    rollup_completion_tokens Int64 DEFAULT toInt64(completion_tokens),
    rollup_total_tokens      Int64 DEFAULT toInt64(total_tokens),
    attr_keys         Array(LowCardinality(String)),
    attr_values       Array(String) CODEC(LZ4),
    attr_opaque       Array(LowCardinality(String)),
    INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 32,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 32,
    INDEX idx_start_time start_time TYPE minmax GRANULARITY 32,
    INDEX idx_run_id JSONExtractString(metadata, 'run_id') TYPE bloom_filter(0.01) GRANULARITY 32
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, session_id, event_id)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 10000,
    fsync_after_insert = 1, fsync_part_directory = 1;

INSERT INTO {db}.events_0011 (org_id, workspace_id, project_id, session_id, event_id, parent_id, children_ids,
    event_type, event_name, source, start_time, end_time, duration, error, config, inputs,
    outputs, metadata, metrics, feedback, user_properties, model, provider, prompt_tokens,
    completion_tokens, total_tokens, cost, trace_id, span_id, version, inserted_at,
    rollup_cost, rollup_prompt_tokens, rollup_completion_tokens, rollup_total_tokens,
    attr_keys, attr_values, attr_opaque)
SELECT org_id, workspace_id, project_id, session_id, event_id, parent_id, children_ids,
    event_type, event_name, source, start_time, end_time, duration, error, config, inputs,
    outputs, metadata, metrics, feedback, user_properties, model, provider, prompt_tokens,
    completion_tokens, total_tokens, cost, trace_id, span_id, version, inserted_at,
    rollup_cost, rollup_prompt_tokens, rollup_completion_tokens, rollup_total_tokens,
    arrayMap(x -> x.1, arrayFilter(x -> NOT startsWith(x.2, '{') AND NOT startsWith(x.2, '[') AND x.2 != 'null' AND lengthUTF8(JSONExtractString(x.2)) <= 256, leaves)),
    arrayMap(x -> if(startsWith(x.2, '"'), JSONExtractString(x.2), x.2),
             arrayFilter(x -> NOT startsWith(x.2, '{') AND NOT startsWith(x.2, '[') AND x.2 != 'null' AND lengthUTF8(JSONExtractString(x.2)) <= 256, leaves)),
    arrayMap(x -> x.1, arrayFilter(x -> x.2 != 'null' AND NOT (NOT startsWith(x.2, '{') AND NOT startsWith(x.2, '[') AND x.2 != 'null' AND lengthUTF8(JSONExtractString(x.2)) <= 256), leaves))
FROM (SELECT *, arrayConcat(
            if(config = '{}', [], arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 2, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(config, kv.3[1], kv.3[2])))), [kv]), arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 1, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(config, kv.3[1])))), [kv]), arrayMap(kv -> (concat('config.', kv.1), kv.2, [kv.1]), arrayFilter(kv -> match(kv.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(config)))))))),
            if(metadata = '{}', [], arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 2, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(metadata, kv.3[1], kv.3[2])))), [kv]), arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 1, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(metadata, kv.3[1])))), [kv]), arrayMap(kv -> (concat('metadata.', kv.1), kv.2, [kv.1]), arrayFilter(kv -> match(kv.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(metadata)))))))),
            if(metrics = '{}', [], arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 2, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(metrics, kv.3[1], kv.3[2])))), [kv]), arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 1, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(metrics, kv.3[1])))), [kv]), arrayMap(kv -> (concat('metrics.', kv.1), kv.2, [kv.1]), arrayFilter(kv -> match(kv.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(metrics)))))))),
            if(feedback = '{}', [], arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 2, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(feedback, kv.3[1], kv.3[2])))), [kv]), arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 1, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(feedback, kv.3[1])))), [kv]), arrayMap(kv -> (concat('feedback.', kv.1), kv.2, [kv.1]), arrayFilter(kv -> match(kv.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(feedback)))))))),
            if(user_properties = '{}', [], arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 2, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(user_properties, kv.3[1], kv.3[2])))), [kv]), arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{"') AND length(kv.3) = 1, arrayConcat([(kv.1, '{', kv.3)], arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2, arrayPushBack(kv.3, sub.1)), arrayFilter(sub -> match(sub.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(user_properties, kv.3[1])))), [kv]), arrayMap(kv -> (concat('user_properties.', kv.1), kv.2, [kv.1]), arrayFilter(kv -> match(kv.1, '^[A-Za-z0-9_:@$#-]+$'), JSONExtractKeysAndValuesRaw(user_properties))))))))) AS leaves FROM {db}.events)
SETTINGS insert_deduplicate = 0;

EXCHANGE TABLES {db}.events AND {db}.events_0011;

DROP TABLE IF EXISTS {db}.events_0011;

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

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.event_schemas_mv TO {db}.event_schemas AS
SELECT
    project_id,
    event_type,
    event_name,
    concat(column_value.1, '.', leaf.1) AS path,
    multiIf(
        startsWith(leaf.2, '"'), 'string',
        startsWith(leaf.2, '{'), 'object',
        startsWith(leaf.2, '['), 'array',
        leaf.2 IN ('true', 'false'), 'boolean',
        leaf.2 = 'null', 'null',
        'number'
    ) AS value_type,
    count() AS occurrences,
    min(start_time) AS first_seen,
    max(start_time) AS last_seen
FROM
(
    SELECT project_id, event_type, event_name, start_time, column_value
    FROM {db}.events
    ARRAY JOIN [
        ('config', config), ('inputs', inputs), ('outputs', outputs), ('metadata', metadata),
        ('metrics', metrics), ('feedback', feedback), ('user_properties', user_properties)
    ] AS column_value
    WHERE column_value.2 != '{}'
)
ARRAY JOIN
    arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{') AND kv.2 != '{}',
        arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2), JSONExtractKeysAndValuesRaw(kv.2)),
        [kv]),
      arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{') AND kv.2 != '{}',
        arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2), JSONExtractKeysAndValuesRaw(kv.2)),
        [kv]),
      arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{') AND kv.2 != '{}',
        arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2), JSONExtractKeysAndValuesRaw(kv.2)),
        [kv]),
      arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{') AND kv.2 != '{}',
        arrayMap(sub -> (concat(kv.1, '.', sub.1), sub.2), JSONExtractKeysAndValuesRaw(kv.2)),
        [kv]),
      JSONExtractKeysAndValuesRaw(column_value.2))))))))) AS leaf
GROUP BY project_id, event_type, event_name, path, value_type;

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
