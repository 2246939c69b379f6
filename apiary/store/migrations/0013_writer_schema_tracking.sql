-- Schema and detail tracking move from ClickHouse to the writers (issue 17).
--
-- The views event_schemas_mv and project_event_details_mv ran on every insert into
-- events: walking each row's JSON for event_schemas was the largest single cost of an
-- insert (bench/insert: +16.3 us a row of ClickHouse CPU at 5,000 rows an insert, of
-- 51.5). They are dropped; their tables and data stay. Whoever inserts events now derives
-- the same rows from the Arrow table it inserts, aggregated per insert
-- (apiary.store._tracking.track_fields, in the writer's process), and
-- EventStore.insert_arrow inserts them after the events (tests/store/
-- test_schema_tracking_differential.py: every reader answers as with the views).
--
-- event_schemas.occurrences is a sum, so an insert repeated after a timeout must not add
-- it twice: the table gets a deduplication window, and its insert a token derived from
-- the events insert's (the views were skipped when the events block was deduplicated).
--
-- project_event_details.event_count is a uniq state, which only ClickHouse can build:
-- rows carrying the insert's distinct event ids per (project, type, name) go to a Null
-- table, and a view over those few rows folds the ids into the state (uniq and min/max
-- are idempotent: a repeated insert changes nothing, and needs no window).
DROP VIEW IF EXISTS {db}.event_schemas_mv;

DROP VIEW IF EXISTS {db}.project_event_details_mv;

ALTER TABLE {db}.event_schemas MODIFY SETTING non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.project_event_details_input
(
    project_id   String,
    event_type   String,
    event_name   String,
    event_ids    Array(String),
    first_seen   DateTime64(6, 'UTC'),
    last_seen    DateTime64(6, 'UTC')
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.project_event_details_input_mv
TO {db}.project_event_details AS
SELECT
    project_id,
    event_type,
    event_name,
    arrayReduce('uniqState', event_ids) AS event_count,
    first_seen,
    last_seen
FROM {db}.project_event_details_input;
