"""The wire between the pool, the zygote and the workers: JSON lines, never pickle.

Everything a worker sends is data (orjson-decoded dicts, strings, numbers): a subverted
worker can lie about a result but cannot make the parent execute anything, which it could
through pickle (multiprocessing's default). Lines are bounded on both sides.

Messages (one JSON object per line):

- worker → pool, once: ``{"type": "ready", "isolation": {...}}`` or
  ``{"type": "setup_failed", "error": "..."}``.
- pool → worker: ``{"id": n, "code": "...", "event": {...}, "ground_truth": ...}``.
- worker → pool: ``{"id": n, "ok": true, "score": ..., "explanation": ..., "extras": {...},
  "logs": "...", "duration_ms": ..., "retire": bool}`` or ``{"id": n, "ok": false,
  "kind": KIND, "error_type": "...", "message": "...", "line": n, "retire": bool}``.
- pool → zygote (control socket, with the worker's socket attached):
  ``{"op": "fork", "limits": {...}}``; zygote → pool: ``{"pid": n}`` with a pidfd attached.
- zygote → pool (its stdout): ``{"event": "ready", ...}`` once, then
  ``{"event": "exit", "pid": n, "signal": s | null, "code": c | null}`` per worker.
"""

from __future__ import annotations

import socket
from typing import Any

import orjson

# Failure kinds a worker reports (``kind``), mapped to errors by the pool.
KIND_COMPILE = "compile"
KIND_RUNTIME = "runtime"
KIND_MEMORY = "memory"
KIND_OUTPUT = "output"
KIND_RESULT = "result"
KIND_POLICY = "policy"

# Exit codes of a worker that ends on its own.
EXIT_OK = 0
EXIT_MEMORY = 75
EXIT_PROTOCOL = 76
EXIT_SETUP = 77

# Framing overhead allowed on top of the output limit (ids, keys, JSON escaping).
FRAME_SLACK = 64 * 1024
# Most bytes of one job line the worker accepts from the pool (events can be large).
MAX_REQUEST_BYTES = 256 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    value = orjson.loads(line)
    if not isinstance(value, dict):
        raise ValueError("protocol message is not an object")
    return value


class LineTooLong(Exception):
    pass


class LineReader:
    """Blocking line reader over a socket with a bound on line length (worker side)."""

    def __init__(self, sock: socket.socket, max_line: int) -> None:
        self.sock = sock
        self.max_line = max_line
        self.buffer = bytearray()

    def readline(self) -> bytes | None:
        """The next line without its newline, or None at end of stream."""
        start = 0
        while True:
            newline = self.buffer.find(b"\n", start)
            if newline >= 0:
                line = bytes(self.buffer[:newline])
                del self.buffer[: newline + 1]
                return line
            if len(self.buffer) > self.max_line:
                raise LineTooLong(f"line longer than {self.max_line} bytes")
            start = len(self.buffer)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
