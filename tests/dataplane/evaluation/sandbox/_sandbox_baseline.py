"""The sandbox tests' baseline: the limits their pools run under, a normal metric and event,
and the check that a pool still scores them after an attack."""

from __future__ import annotations

from apiary.dataplane.evaluation.sandbox import SandboxLimits, SandboxPool

TRIVIAL = "def evaluate(event):\n    return len(event['outputs']['content'])\n"
EVENT = {"event_type": "model", "inputs": {"q": "hi"}, "outputs": {"content": "hello"},
         "metadata": {"m": 1}, "feedback": {"ground_truth": "hello"}}

# CPU 2 s, so busy loops end by the kernel's limit; a wall clock far above it, so a loaded
# machine still reaches the CPU limit first; small memory and output limits, so bombs end
# fast.
LIMITS = SandboxLimits(cpu_s=2, timeout_s=60, memory_mb=256, max_output_bytes=16 * 1024,
                       max_code_bytes=8 * 1024)


async def assert_healthy(pool: SandboxPool) -> None:
    """The pool still scores a normal metric."""
    result = await pool.run(TRIVIAL, EVENT)
    assert result.score == 5
