-- A skip index on the run an event belongs to (metadata.run_id, set on every span of an
-- experiment run), so that a run's results find its sessions without reading the whole
-- project (apiary.store._experiments). bloom_filter prunes granules holding no event of
-- the run; events outside experiments have '' and cost nothing. MATERIALIZE builds the
-- index for rows written before this migration (a mutation; running it again is harmless).
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS idx_run_id JSONExtractString(metadata, 'run_id') TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE {db}.events MATERIALIZE INDEX idx_run_id;
