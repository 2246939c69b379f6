"""compile_metric: what a metric definition is checked against, without running it."""

from __future__ import annotations

import pytest

from apiary.dataplane.evaluation.sandbox import SandboxLimits, compile_metric
from apiary.errors import ConfigurationError, SandboxCompileError
from apiary.settings import load_settings


def test_entry_point_choice() -> None:
    assert compile_metric("def helper(x):\n    return x\n"
                          "def evaluate(event):\n    return helper(1)\n").entry == "evaluate"
    assert compile_metric("def metric(outputs):\n    return 1\n").entry == "metric"
    assert compile_metric("def num_words(event):\n    return 1\n").entry == "num_words"
    with pytest.raises(SandboxCompileError, match="several functions"):
        compile_metric("def a(event):\n    return 1\ndef b(event):\n    return 2\n")
    with pytest.raises(SandboxCompileError, match="must define a function"):
        compile_metric("x = 1\n")


def test_parameter_binding() -> None:
    named = compile_metric("def metric(inputs, outputs, ground_truth, metadata):\n    return 1\n")
    assert named.positional == ("inputs", "outputs", "ground_truth", "metadata")
    optional = compile_metric("def evaluate(event, ground_truth=None, other=3):\n    return 1\n")
    assert optional.positional == ("event", "ground_truth")
    keyword = compile_metric("def evaluate(event, *, metadata):\n    return 1\n")
    assert keyword.keywords == ("metadata",)
    honeyhive = compile_metric("def f(a, b, c):\n    return 1\n")
    assert honeyhive.positional == ("outputs", "inputs", "ground_truth")
    with pytest.raises(SandboxCompileError, match="4 required parameters"):
        compile_metric("def f(a, b, c, d):\n    return 1\n")
    with pytest.raises(SandboxCompileError, match="keyword-only"):
        compile_metric("def f(event, *, mystery):\n    return 1\n")


def test_rejections_name_the_line() -> None:
    with pytest.raises(SandboxCompileError) as info:
        compile_metric("def evaluate(event):\n    return (\n")
    assert "syntax error" in info.value.message
    assert info.value.context["line"] >= 2
    with pytest.raises(SandboxCompileError) as info:
        compile_metric("def evaluate(event):\n    import os\n    return 1\n")
    assert info.value.context["line"] == 2
    with pytest.raises(SandboxCompileError, match="Line 2"):
        compile_metric("def evaluate(event):\n    return event.__dict__\n")
    with pytest.raises(SandboxCompileError, match="relative imports"):
        compile_metric("from . import x\ndef evaluate(event):\n    return 1\n")
    with pytest.raises(SandboxCompileError, match="AsyncFunctionDef"):
        compile_metric("async def helper():\n    pass\ndef evaluate(event):\n    return 1\n")
    with pytest.raises(SandboxCompileError, match="null bytes"):
        compile_metric("def evaluate(event):\n    return 1\n\x00")


def test_size_limit_is_checked_before_parsing() -> None:
    source = "def evaluate(event):\n    return 1\n" + "(" * 100_000
    with pytest.raises(SandboxCompileError) as info:
        compile_metric(source, max_code_bytes=1024)
    assert info.value.context == {"size": len(source), "limit": 1024}
    assert info.value.to_body()["details"] == {"size": len(source), "limit": 1024}


def test_allowed_imports_compile() -> None:
    metric = compile_metric("import numpy as np\nfrom sklearn.metrics import f1_score\n"
                            "import collections.abc\ndef evaluate(event):\n    return 1\n")
    assert metric.imports == ("numpy", "sklearn.metrics", "collections.abc")


def test_limits_from_settings() -> None:
    settings = load_settings(sandbox_cpu_s=3, sandbox_memory_mb=128,
                             sandbox_max_jobs_per_worker=1)
    limits = SandboxLimits.from_settings(settings)
    assert (limits.cpu_s, limits.memory_bytes, limits.max_jobs_per_worker) == (
        3, 128 * 1024 * 1024, 1)
    assert SandboxLimits.from_wire(limits.to_wire()) == limits
    with pytest.raises(ConfigurationError, match="sandbox_uid"):
        SandboxLimits(sandbox_uid=0)
