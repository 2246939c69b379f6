"""Reading alert rules and the served projects from the federation buckets, as the applier
writes them; the evaluation grid and the link to the matching events."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from _alerts import fresh, put_rule, serve
from nats.aio.client import Client

from apiary.dataplane.alerts.evaluator import ui_base, window_end_at
from apiary.dataplane.alerts.notice import events_link
from apiary.dataplane.alerts.rules import parse_rule, read_rules, served_projects
from apiary.dataplane.replica.federation_state import CONFIG_BUCKET
from apiary.settings import ApiarySettings


async def test_every_rule_is_read_and_a_broken_entry_is_skipped(
        tmp_path: Path, nc: Client) -> None:
    await fresh(nc, ApiarySettings(data_dir=tmp_path))
    assert await read_rules(nc.jetstream()) == []
    await put_rule(nc, "p1", "a1", muted=True, min_duration_s=120)
    await put_rule(nc, "p2", "a2", type="drift", field="latency_p95", direction="up",
                   warning={"op": ">=", "value": 0.5}, critical=None)
    kv = await nc.jetstream().key_value(CONFIG_BUCKET)
    await kv.put("alert_rule.p1.broken", b'{"version": 3, "object": {"id": "broken"}}')
    await kv.put("notification_channel.o.c", b"{}")  # not a rule
    rules = {r.alert_id: r for r in await read_rules(nc.jetstream())}
    assert sorted(rules) == ["a1", "a2"]
    a1, a2 = rules["a1"], rules["a2"]
    assert (a1.project_id, a1.muted, a1.paused, a1.min_duration_s) == ("p1", True, False, 120)
    assert a1.warning is not None
    assert a1.warning.past(0.5)
    assert not a1.warning.past(0.49)
    assert (a2.type, a2.direction, a2.comparison_window_s, a2.critical) == (
        "drift", "up", 60, None)
    await kv.delete("alert_rule.p2.a2")  # a deleted rule
    assert [r.alert_id for r in await read_rules(nc.jetstream())] == ["a1"]


async def test_served_projects_come_from_the_assignments(tmp_path: Path, nc: Client) -> None:
    await fresh(nc, ApiarySettings(data_dir=tmp_path))
    assert await served_projects(nc.jetstream()) == {}
    await serve(nc, {"p1": ("o1", "w1")})
    assert (await served_projects(nc.jetstream()))["p1"]["workspace_id"] == "w1"


def test_a_changed_condition_changes_the_key_and_state_does_not() -> None:
    def doc(warning: float, **alert: object) -> dict[str, object]:
        return {"version": 1, "project_id": "p", "object": {
            "id": "a", "condition": {"type": "aggregate", "field": "error_rate",
                                     "window_s": 60, "warning": {"op": ">", "value": warning}},
            **alert}}
    base = parse_rule(doc(0.5))
    assert parse_rule(doc(0.5, muted=True, evaluation_state="triggered")).condition_key \
        == base.condition_key
    assert parse_rule(doc(0.6)).condition_key != base.condition_key
    with pytest.raises(ValueError, match="unknown field"):
        parse_rule({"project_id": "p", "object": {"id": "a", "condition": {
            "type": "aggregate", "field": "nonsense", "window_s": 60}}})


def test_grid_and_link(tmp_path: Path) -> None:
    assert window_end_at(1_000_059.9, 60) == 1_000_020
    assert window_end_at(1_000_060.0, 5) == 1_000_060
    settings = ApiarySettings(data_dir=tmp_path)
    assert ui_base(settings) == f"{settings.base_url}/cp"
    remote = ApiarySettings(data_dir=tmp_path, control_plane_url="https://cp.example.com/")
    assert ui_base(remote) == "https://cp.example.com"
    rule = parse_rule({"version": 1, "project_id": "p1", "object": {"id": "a", "condition": {
        "type": "aggregate", "field": "error_rate", "window_s": 300,
        "filters": [{"field": "event_type", "operator": "is", "value": "model"}],
        "warning": {"op": ">", "value": 0.5}}}})
    link = urlsplit(events_link("https://cp.example.com", rule, 1_000_200))
    assert link.path == "/projects/p1/traces"
    query = parse_qs(link.query)
    assert query["from"] == ["999900000"]
    assert query["to"] == ["1000200000"]
    assert orjson.loads(query["f"][0]) == [{"field": "event_type", "operator": "is",
                                            "value": "model"}]
