-- Sessions whose events were stored before their session event, so inherited nothing.
--
-- A writer inherits a session's metadata and user properties into its events when it
-- knows the session event. An event that names its session but arrives before the session
-- event (a root span of type session ends, and is exported, last) is stored with its own
-- fields only; the writer records the session here, and when the session event arrives it
-- writes those events again with what they inherit (apiary.actors._backfill). Looked up
-- by session; a session event that arrives more than 7 days after its children is not
-- waited for.
CREATE TABLE IF NOT EXISTS {db}.uninherited_sessions
(
    project_id  LowCardinality(String),
    session_id  String,
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (project_id, session_id)
TTL toDateTime(recorded_at) + INTERVAL 7 DAY
SETTINGS index_granularity = 256;
