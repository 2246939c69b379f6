"""Migration 0002 (provider credentials, annotation queues and items) and their operations,
on PostgreSQL and SQLite."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from apiary.dataplane.datasets import catalog as dataset_ops
from apiary.dataplane.db import (
    AnnotationItem,
    DataPlaneDatabase,
    Owner,
    current_revision,
    downgrade,
    open_engine,
    upgrade,
)
from apiary.dataplane.evaluation.proxy import credentials as vault
from apiary.dataplane.evaluation.proxy.envelope import Envelope
from apiary.dataplane.review import items as item_ops
from apiary.dataplane.review import queues as queue_ops
from apiary.errors import Conflict, NotFound

BOTH = pytest.mark.parametrize("empty_dp_url", ["sqlite", "postgresql"], indirect=True)
OWNER = Owner("org-1", "ws-1", "proj-1", "user:lead")
WS = vault.Workspace("org-1", "ws-1")


@BOTH
def test_0002_upgrades_a_database_with_data_and_downgrades_cleanly(empty_dp_url: str) -> None:
    upgrade(empty_dp_url, "0001")
    database = DataPlaneDatabase.open(empty_dp_url, migrate=False)
    try:
        with database.transaction() as db:
            dataset_ops.create_dataset(db, OWNER, name="kept", description=None)
        upgrade(empty_dp_url, "0002")
        assert current_revision(empty_dp_url) == "0002"
        # The rows are written with today's models, which are the head's: downgrading
        # from there to 0001 runs 0002's downgrade over tables that hold data.
        upgrade(empty_dp_url, "head")
        with database.transaction() as db:
            queue_ops.create_queue(db, OWNER, name="q", description=None, filters=[],
                                   enabled=True, reviewers=[], event_ids=["e1"])
            vault.create_credential(db, Envelope(os.urandom(32)), WS, provider="openai",
                                    api_key="sk-" + "k" * 30)
        downgrade(empty_dp_url, "0001")
        assert current_revision(empty_dp_url) == "0001"
        with database.transaction() as db:
            assert [d.name for d in dataset_ops.find_datasets(db, "proj-1")] == ["kept"]
        engine = open_engine(empty_dp_url)
        try:
            with engine.connect() as connection:
                names = {r[0] for r in connection.execute(text(
                    "SELECT table_name FROM information_schema.tables")
                    if engine.dialect.name == "postgresql"
                    else text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
        finally:
            engine.dispose()
        assert not names & {"provider_credentials", "annotation_queues", "annotation_items"}
    finally:
        database.dispose()


def test_credentials_are_one_per_provider_and_workspace(dp: DataPlaneDatabase) -> None:
    envelope = Envelope(os.urandom(32))
    with dp.transaction() as db:
        first = vault.create_credential(db, envelope, WS, provider="openai",
                                        api_key="sk-" + "a" * 30)
        first_id = first.id
        with pytest.raises(Conflict):
            vault.create_credential(db, envelope, WS, provider="OpenAI",
                                    api_key="sk-" + "b" * 30)
        # The same workspace id in another organization is another tenant.
        other = vault.create_credential(db, envelope, vault.Workspace("org-2", "ws-1"),
                                        provider="openai", api_key="sk-" + "c" * 30)
        assert vault.reveal(envelope, other) == "sk-" + "c" * 30
    with dp.transaction() as db:
        found = vault.credential_for(db, WS, "openai")
        assert found is not None
        assert found.id == first_id
        assert vault.reveal(envelope, found) == "sk-" + "a" * 30
        with pytest.raises(NotFound):
            vault.get_credential(db, vault.Workspace("org-2", "ws-1"), first_id)


def test_items_are_unique_per_queue_and_cascade_with_it(dp: DataPlaneDatabase) -> None:
    with dp.transaction() as db:
        queue = queue_ops.create_queue(db, OWNER, name="q", description=None, filters=[],
                                       enabled=True, reviewers=["user:a", "user:b"],
                                       event_ids=["e1", "e2", "e3"])
        queue_id = queue.id
        assert item_ops.add_events(db, queue, ["e1", "e4"], source="rule",
                                   added_by="rule") == ["e4"]
        assignees = [i.assignee for i in item_ops.list_items(db, queue).items]
        assert assignees == ["user:a", "user:b", "user:a", "user:b"]
    with pytest.raises(IntegrityError), dp.transaction() as db:
        db.execute(text("INSERT INTO annotation_items (queue_id, event_id, project_id, "
                        "status, source, added_at, updated_at) VALUES "
                        "(:q, 'e9', 'proj-1', 'finished', 'manual', :t, :t)"),
                   {"q": queue_id, "t": "2026-01-01 00:00:00"})
    with dp.transaction() as db:
        queue_ops.delete_queue(db, queue_ops.get_queue(db, "proj-1", queue_id))
    with dp.transaction() as db:
        assert db.scalars(select(AnnotationItem).where(
            AnnotationItem.queue_id == queue_id)).all() == []


def test_concurrent_claims_never_hand_out_one_item_twice(dp: DataPlaneDatabase) -> None:
    with dp.transaction() as db:
        queue = queue_ops.create_queue(db, OWNER, name="race", description=None, filters=[],
                                       enabled=True, reviewers=[],
                                       event_ids=[f"e{i}" for i in range(6)])
        queue_id = queue.id
    claimed: list[str | None] = []
    lock = threading.Lock()

    def claim(subject: str) -> None:
        for _ in range(3):
            with dp.transaction() as db:
                item = item_ops.claim_next(db, queue_ops.get_queue(db, "proj-1", queue_id),
                                           subject)
                with lock:
                    claimed.append(item.event_id if item else None)

    threads = [threading.Thread(target=claim, args=(f"user:{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = [c for c in claimed if c is not None]
    assert sorted(got) == sorted(f"e{i}" for i in range(6))  # each exactly once
    assert claimed.count(None) == 3
