"""The writer: pull batches from JetStream, enrich, insert into ClickHouse as Arrow, apply
updates, relink late sessions, back-fill inheritance, then acknowledge. The Ray actor that
runs it is :mod:`apiary.actors.writer`."""
