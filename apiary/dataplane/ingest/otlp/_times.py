"""OTLP times (integer epoch nanoseconds) as event times (float epoch milliseconds)."""

from __future__ import annotations

from operator import truediv


def millis(nanos: int) -> float:
    """Epoch nanoseconds as epoch milliseconds, exact to the microsecond.

    ``int / int`` is correctly rounded in CPython, but mypyc (``make compile``) compiles
    it as a division of two doubles, and a nanosecond timestamp has more digits than a
    double holds: 1_700_000_000_050_000_000 ns came out as ...049.9998 ms. ``truediv``
    is CPython's own division, compiled or not; this module is compiled too, so the hot
    path calls it without a Python frame.
    """
    result: float = truediv(nanos, 1_000_000)
    return result
