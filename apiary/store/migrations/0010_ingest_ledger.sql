-- The ingest ledger: how each message of the JetStream `events` stream was settled (issue 13).
--
-- A writer records a message here before it acknowledges it (outcome 'stored', the rows it
-- carried) or terminates it after its dead letter is durable (outcome 'dead'); a message
-- partly stored and partly dead-lettered has one row of each. Together with the messages
-- the stream still retains, this gives every project's exact accounting: accepted = stored
-- + dead-lettered + in flight (apiary.dataplane.accounting).
--
-- One row per (project, stream sequence, outcome): ReplacingMergeTree collapses a message
-- recorded twice (a redelivered or retried record), and reads collapse with FINAL. A
-- repeated insert carries the same insert_deduplication_token, so within the window it
-- stores nothing at all. Durable before the writer acknowledges, like the events: every
-- part is fsync'ed with its directory (see 0009). No TTL: the totals are since the start.
CREATE TABLE IF NOT EXISTS {db}.ingest_ledger
(
    project_id      LowCardinality(String),
    stream_sequence UInt64,
    outcome         LowCardinality(String),
    kind            LowCardinality(String),
    rows            UInt32,
    recorded_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (project_id, stream_sequence, outcome)
SETTINGS non_replicated_deduplication_window = 10000, fsync_after_insert = 1,
    fsync_part_directory = 1;
