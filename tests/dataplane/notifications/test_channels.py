"""Channels as the data plane sees them: routing by scope and severity, and their entries
in the federation bucket, whose secrets are sealed with the data plane's envelope."""

from __future__ import annotations

import orjson
import pytest
from _notify import alert, fresh, put_channel
from nats.aio.client import Client

from apiary.dataplane.evaluation.proxy.envelope import Envelope, envelope_from_settings
from apiary.dataplane.notifications.channels import (
    CONFIG_BUCKET,
    Channel,
    InMemoryChannelDirectory,
    KvChannelDirectory,
    channel_entry,
    open_entry,
)
from apiary.dataplane.notifications.message import TestNotification
from apiary.errors import ConfigurationError, InvalidRequest
from apiary.settings import ApiarySettings

SECRET = "whsec-0123456789abcdef"


def _webhook(ident: str, scope: dict[str, str], severities: list[str], *,
             org: str = "org1", **extra: object) -> dict[str, object]:
    return {"id": ident, "org_id": org, "name": ident, "type": "webhook", "scope": scope,
            "severities": severities, "config": {"url": f"https://hooks.example.com/{ident}",
                                                 "secret": SECRET}, **extra}


def _ids(channels: list[Channel]) -> list[str]:
    return [c.id for c in channels]


async def test_a_firing_goes_to_every_channel_whose_scope_contains_it_and_takes_its_stage(
        ) -> None:
    directory = InMemoryChannelDirectory([Channel.from_plain(c) for c in (
        _webhook("org-all", {"type": "org", "id": "org1"}, ["warning", "critical"]),
        _webhook("ws1-crit", {"type": "workspace", "id": "ws1"}, ["critical"]),
        _webhook("p1-all", {"type": "project", "id": "p1"},
                 ["warning", "critical", "resolution"]),
        _webhook("p2-all", {"type": "project", "id": "p2"},
                 ["warning", "critical", "resolution"]),
        _webhook("off", {"type": "org", "id": "org1"}, ["warning"], enabled=False),
        _webhook("org2", {"type": "org", "id": "org2"}, ["warning"], org="org2"),
    )])
    warning = alert("org1", "p1", "warning", workspace="ws1")
    assert _ids(await directory.channels_for(warning)) == ["org-all", "p1-all"]
    critical = alert("org1", "p1", "critical", workspace="ws1")
    assert _ids(await directory.channels_for(critical)) == ["org-all", "p1-all", "ws1-crit"]
    resolution = alert("org1", "p1", "resolution", workspace="ws2")
    assert _ids(await directory.channels_for(resolution)) == ["p1-all"]
    # Another org's project of the same id hears nothing of org1's channels.
    assert _ids(await directory.channels_for(alert("org3", "p1", "warning"))) == []
    # A test goes to the channel it names only, whatever its severities.
    test = TestNotification(org_id="org1", test_id="t1", channel_ids=("ws1-crit",))
    assert _ids(await directory.channels_for(test)) == ["ws1-crit"]
    # ... and never to another org's channel of that id.
    stray = TestNotification(org_id="org1", test_id="t2", channel_ids=("org2",))
    assert _ids(await directory.channels_for(stray)) == []


def test_a_channel_that_is_not_one_is_refused_naming_the_field() -> None:
    bad = _webhook("c1", {"type": "project", "id": "p1"}, ["warning"])
    bad["config"] = {"url": "https://x.example.com", "secret": "short"}
    with pytest.raises(InvalidRequest) as refused:
        Channel.from_plain(bad)
    assert refused.value.context["field"] == "config.secret"
    with pytest.raises(InvalidRequest):
        Channel.from_plain({**bad, "type": "pager"})
    email = {"id": "e1", "org_id": "org1", "type": "email",
             "scope": {"type": "org", "id": "org1"}, "severities": ["critical"],
             "config": {"recipients": ["not-an-address"]}}
    with pytest.raises(InvalidRequest):
        Channel.from_plain(email)


def test_the_bucket_entry_holds_no_plaintext_secret_and_opens_only_in_place(
        settings: ApiarySettings) -> None:
    envelope = envelope_from_settings(settings)
    # The control plane's payload as the config log carries it (fields the data plane does
    # not use are ignored).
    payload = _webhook("c1", {"type": "project", "id": "p1"}, ["warning"], deleted=False,
                       created_at="2026-12-06T00:00:00Z")
    key, value = channel_entry(payload, envelope)
    assert key == "notification_channel.org1.c1"
    assert SECRET.encode() not in value
    assert b"hooks.example.com" not in value
    channel = open_entry(value, envelope)
    assert isinstance(channel.config, type(Channel.from_plain(
        _webhook("x", {"type": "org", "id": "org1"}, ["warning"])).config))
    assert channel.config.secret.get_secret_value() == SECRET  # type: ignore[union-attr]
    # A sealed secret copied into another channel's entry does not open there.
    moved = orjson.loads(value)
    moved["id"] = "c2"
    with pytest.raises(ConfigurationError):
        open_entry(orjson.dumps(moved), envelope)
    # Nor under another envelope key.
    with pytest.raises(ConfigurationError):
        open_entry(value, Envelope(b"k" * 32))


async def test_the_directory_reads_the_federation_bucket(
        nc: Client, settings: ApiarySettings) -> None:
    await fresh(nc, settings)
    await put_channel(nc, settings, **_webhook("c1", {"type": "project", "id": "p1"},
                                               ["warning"]))
    await put_channel(nc, settings, **_webhook("c2", {"type": "project", "id": "p2"},
                                               ["warning"]))
    await put_channel(nc, settings, **_webhook("c3", {"type": "org", "id": "org2"},
                                               ["warning"], org="org2"))
    kv = await nc.jetstream().key_value(CONFIG_BUCKET)
    await kv.put("notification_channel.org1.broken", b"{not json")
    directory = KvChannelDirectory(nc.jetstream(), envelope_from_settings(settings))
    assert _ids(await directory.channels_for(alert("org1", "p1"))) == ["c1"]
    assert directory.unreadable == 1  # logged and skipped; the others still receive
    await kv.delete("notification_channel.org1.c1")
    assert _ids(await directory.channels_for(alert("org1", "p1"))) == []
    assert _ids(await directory.channels("org2")) == ["c3"]


async def test_without_the_bucket_there_is_no_channel(
        nc: Client, settings: ApiarySettings) -> None:
    await fresh(nc, settings)
    directory = KvChannelDirectory(nc.jetstream(), envelope_from_settings(settings),
                                   bucket="no-such-bucket")
    assert await directory.channels_for(alert("org1", "p1")) == []
