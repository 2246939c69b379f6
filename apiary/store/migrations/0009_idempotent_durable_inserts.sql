-- Idempotent and durable inserts (issue 13).
--
-- Deduplication: ClickHouse remembers the last N insert blocks of a non-replicated
-- MergeTree table only when non_replicated_deduplication_window is set. A writer's insert
-- carries an insert_deduplication_token (its messages' ids and its rows' ids and versions):
-- an insert that timed out after ClickHouse committed it is retried with the same token and
-- stores nothing. The materialized views deduplicate their blocks too
-- (deduplicate_blocks_in_dependent_materialized_views, on by default) only where their
-- target table has a window: session_aggregates gets one, so a repeated insert does not add
-- its cost and tokens to the session twice. An insert without a token is deduplicated by
-- the hash of its data (a byte-identical block is the same rows again: harmless).
--
-- Durability: writers acknowledge JetStream (which then deletes the messages) once the
-- insert returns, so a part must be on disk by then: fsync_after_insert fsyncs every part
-- an insert writes, fsync_part_directory its directory (the rename that publishes it).
-- Every table an insert (or its materialized views) writes before a writer acknowledges.
ALTER TABLE {db}.events MODIFY SETTING
    non_replicated_deduplication_window = 10000, fsync_after_insert = 1,
    fsync_part_directory = 1;

ALTER TABLE {db}.session_aggregates MODIFY SETTING
    non_replicated_deduplication_window = 10000, fsync_after_insert = 1,
    fsync_part_directory = 1;

ALTER TABLE {db}.event_schemas MODIFY SETTING
    fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE {db}.project_event_details MODIFY SETTING
    fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE {db}.event_updates MODIFY SETTING
    fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE {db}.derived_traces MODIFY SETTING
    fsync_after_insert = 1, fsync_part_directory = 1;

ALTER TABLE {db}.uninherited_sessions MODIFY SETTING
    fsync_after_insert = 1, fsync_part_directory = 1;
