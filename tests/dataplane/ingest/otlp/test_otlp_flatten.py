"""Un-flattening dotted keys: nesting, lists, collisions, conflicts, compiled builders."""

from __future__ import annotations

import random
from typing import Any

import pytest

from apiary.dataplane.ingest.otlp._flatten import (
    VALUE_KEY,
    indexed,
    merge_flat,
    tree_builder,
    unflatten,
)


def test_dotted_keys_nest() -> None:
    assert unflatten({"a.b.c": 1, "a.d": "x", "e": True}) == {
        "a": {"b": {"c": 1}, "d": "x"}, "e": True,
    }


def test_dense_numeric_segments_become_lists_in_order() -> None:
    flat = {"result.1.title": "second", "result.0.title": "first", "result.0.id": 1,
            "result.1.id": 2, "tags.0": "x", "tags.1": "y", "tags.2": "z"}
    assert unflatten(flat) == {
        "result": [{"title": "first", "id": 1}, {"title": "second", "id": 2}],
        "tags": ["x", "y", "z"],
    }


@pytest.mark.parametrize("flat", [
    {"a.0": 1, "a.5": 3},             # gaps outnumber the items
    {"a.1": 1, "a.2": 2},             # does not start at 0
    {"a.0": 1, "a.x": 2},             # mixed
    {"a.00": 1, "a.1": 2},            # not canonical
])
def test_sparse_or_mixed_numeric_keys_stay_objects(flat: dict[str, Any]) -> None:
    tree = unflatten(flat)
    assert type(tree["a"]) is dict
    assert sorted(tree["a"]) == sorted(key.split(".")[1] for key in flat)


def test_nested_lists() -> None:
    assert unflatten({"m.0.0": "a", "m.0.1": "b", "m.1.0": "c"}) == {"m": [["a", "b"], ["c"]]}


@pytest.mark.parametrize("order", [["a", "a.b"], ["a.b", "a"]])
def test_leaf_subtree_collision_keeps_both_in_any_order(order: list[str]) -> None:
    values = {"a": 1, "a.b": 2}
    tree = unflatten({key: values[key] for key in order})
    assert tree == {"a": {VALUE_KEY: 1, "b": 2}}


def test_collision_with_a_taken_value_slot_keeps_everything() -> None:
    tree = unflatten({"a": 1, "a._value": 2, "a.b": 3})
    assert tree["a"]["b"] == 3
    assert sorted(v for k, v in tree["a"].items() if k.endswith(VALUE_KEY)) == [1, 2]


def test_root_list_is_not_converted() -> None:
    assert unflatten({"0": "a", "1": "b"}) == {"0": "a", "1": "b"}


def test_existing_dict_values_are_merged_not_turned_into_lists() -> None:
    tree = unflatten({"kv": {"0": "x", "1": "y"}, "kv.extra": 1})
    assert tree == {"kv": {"0": "x", "1": "y", "extra": 1}}


def test_empty_segments_are_kept() -> None:
    assert unflatten({"a..b": 1, "c.": 2}) == {"a": {"": {"b": 1}}, "c": {"": 2}}


def test_merge_reports_conflicts_under_original_keys() -> None:
    tree: dict[str, Any] = {"model": "explicit", "x": {"y": 1}}
    conflicts: dict[str, Any] = {}
    merge_flat(tree, {"model": "derived", "x.y": 1, "x.z": 2, "new": 3}, conflicts,
               "gen_ai.request.")
    assert tree == {"model": "explicit", "x": {"y": 1, "z": 2}, "new": 3}
    assert conflicts == {"gen_ai.request.model": "derived"}


def test_merging_never_mutates_the_value_being_merged() -> None:
    shared = {"service": {"name": "svc"}}
    tree: dict[str, Any] = {"service": "leaf"}
    merge_flat(tree, {"service.version": "1"})
    conflicts: dict[str, Any] = {}
    merge_flat(tree, {"res": shared}, conflicts)
    assert shared == {"service": {"name": "svc"}}
    assert tree["service"] == {VALUE_KEY: "leaf", "version": "1"}


def test_indexed_orders_numeric_keys_and_returns_the_rest() -> None:
    items, extra = indexed({"2": "c", "0": "a", "10": "d", "x": "?"})
    assert items == ["a", "c", "d"]
    assert extra == {"x": "?"}


def test_tree_builder_matches_unflatten() -> None:
    rng = random.Random(3)
    segments = ["a", "b", "c", "0", "1", "2", "gen_ai", "server"]
    for _ in range(300):
        keys = list({".".join(rng.choice(segments) for _ in range(rng.randint(1, 4)))
                     for _ in range(rng.randint(1, 8))})
        values = [rng.random() for _ in keys]
        builder = tree_builder(keys)
        if builder is None:
            assert any(k != other and other.startswith(k + ".") for k in keys for other in keys)
            continue
        assert builder(values) == unflatten(dict(zip(keys, values, strict=True)))


def test_tree_builder_quotes_keys_safely() -> None:
    head = "x'\"}); __import__('os')#\\"
    builder = tree_builder([head + ".y", "z"])
    assert builder is not None
    assert builder(["v", 1]) == {head: {"y": "v"}, "z": 1}


def test_sdk_list_with_none_items_comes_back_as_a_list_not_an_object() -> None:
    # The SDK drops None items when flattening [a, None, b]: indices 0 and 2 arrive.
    from apiary.dataplane.ingest.otlp._flatten import unflatten

    tree = unflatten({"result.0": "a", "result.2": "b", "codes.200": "ok", "steps.1": "x"})
    assert tree["result"] == ["a", None, "b"]
    assert tree["codes"] == {"200": "ok"}  # not a list: no "0", index far beyond the items
    assert tree["steps"] == {"1": "x"}
