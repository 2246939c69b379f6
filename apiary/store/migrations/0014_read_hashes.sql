-- Two hash columns that let reads find rows without reading strings (issue 18).
--
-- key_hash: xxHash64 of project_id, session_id and event_id joined by NUL, as the
-- embedded store's register of keys stored twice hashes them (apiary.store._duplicates).
-- An export reads without FINAL over the project: the rows outside the register's keys
-- have one version each, and the few inside it are told apart by this column in the same
-- scan (`key_hash IN {marked}`), 8 bytes a row, where the key strings are ~80
-- (apiary.store._export_reads). At 10M events that scan took 127 ms with no key marked
-- and 239 ms with 10,000, against 1.4-1.6 s for FINAL (bench/query).
--
-- attr_hashes: xxHash64(key, value) of each pair of attr_keys and attr_values (ClickHouse's
-- hash of the two strings, each hashed before they are combined: no separator can make
-- two pairs one). `metadata.app.tenant is tenant-7` read attr_values whole at 10M events
-- (1.8 GiB uncompressed, ~12 strings a row: 730-815 ms of the 2 CPUs);
-- has(attr_hashes, xxHash64(path, value)) took 222 ms (apiary.store._filters uses it for
-- `is` and `is not` on a path the arrays answer). It means what the string comparison
-- means, up to a collision of two different pairs of one project's rows on 64 bits.
--
-- Both are MATERIALIZED: ClickHouse computes them on every insert from columns the writer
-- sends already (no JSON is parsed), so no writer, message or Arrow schema changes. The
-- existing parts get them by a mutation that writes these columns only; until a part has
-- them, a read computes them from the expression (the same values), so the migration is
-- correct while it runs and may run again.
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS key_hash UInt64
    MATERIALIZED xxHash64(concat(project_id, '\0', session_id, '\0', event_id));

ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS attr_hashes Array(UInt64)
    MATERIALIZED arrayMap((k, v) -> xxHash64(k, v), attr_keys, attr_values) CODEC(LZ4);

ALTER TABLE {db}.events MATERIALIZE COLUMN key_hash SETTINGS mutations_sync = 2;

ALTER TABLE {db}.events MATERIALIZE COLUMN attr_hashes SETTINGS mutations_sync = 2;
