"""A metric worker: one isolated process that runs metric code, one job at a time.

Forked by the zygote (``apiary.dataplane.evaluation.sandbox.zygote``), it isolates itself
(``oslimits.isolate_worker``), announces what it applied, then answers job lines until
its socket closes, it has served ``max_jobs_per_worker`` jobs or used its CPU budget,
or a job left it in a state it should not continue from (memory exhausted).

Per job: fresh restricted globals (nothing a previous job bound survives), the metric's
module body executed, its entry function called with the event, the result normalised
and size-checked. Everything user code raises is caught here and reported as data; the
traceback sent back holds only frames of the metric's own code.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections import OrderedDict
from typing import Any

from apiary.dataplane.evaluation.sandbox import oslimits, protocol
from apiary.dataplane.evaluation.sandbox.allowlist import PolicyViolation
from apiary.dataplane.evaluation.sandbox.compiler import FILENAME, CompiledMetric, compile_metric
from apiary.dataplane.evaluation.sandbox.guards import PrintBuffer, restricted_globals
from apiary.dataplane.evaluation.sandbox.limits import SandboxLimits
from apiary.dataplane.evaluation.sandbox.result import MAX_LOG_CHARS, InvalidResult, normalize
from apiary.errors import SandboxCompileError

_COMPILE_CACHE_SIZE = 64
_MAX_MESSAGE_CHARS = 2000


class _Retire(Exception):
    """Raised after a reply when this worker must not take another job."""


def _user_frames(exc: BaseException) -> tuple[int | None, str]:
    """The line of the metric where ``exc`` surfaced, and a traceback of metric frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    line = frames[-1].lineno if frames else None
    text = "".join(traceback.format_list(frames))[-_MAX_MESSAGE_CHARS:]
    return line, text


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break the worker
        text = "<unprintable>"
    return text[:_MAX_MESSAGE_CHARS]


class _Executor:
    """Runs jobs for one worker process."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.compiled: OrderedDict[str, CompiledMetric] = OrderedDict()

    def _compile(self, code: str) -> CompiledMetric:
        metric = self.compiled.get(code)
        if metric is None:
            metric = compile_metric(code, max_code_bytes=self.limits.max_code_bytes)
            self.compiled[code] = metric
            if len(self.compiled) > _COMPILE_CACHE_SIZE:
                self.compiled.popitem(last=False)
        else:
            self.compiled.move_to_end(code)
        return metric

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """The reply to one job (without ``retire``)."""
        job_id = job.get("id")
        prints = PrintBuffer(MAX_LOG_CHARS)
        try:
            metric = self._compile(job["code"])
        except SandboxCompileError as exc:
            return {"id": job_id, "ok": False, "kind": protocol.KIND_COMPILE,
                    "error_type": "SandboxCompileError", "message": exc.message,
                    "line": exc.context.get("line")}
        event = job.get("event")
        if not isinstance(event, dict):
            event = {}
        ground_truth = job.get("ground_truth")
        if ground_truth is None:
            feedback = event.get("feedback")
            if isinstance(feedback, dict):
                ground_truth = feedback.get("ground_truth")
        sources = {"event": event, "ground_truth": ground_truth}
        oslimits.start_job_cpu_limit(self.limits)
        started = time.perf_counter()
        try:
            glb = restricted_globals(prints)
            exec(metric.code, glb)  # restricted code, in this isolated process
            function = glb[metric.entry]
            args = [sources[n] if n in sources else event.get(n) for n in metric.positional]
            kwargs = {n: sources[n] if n in sources else event.get(n) for n in metric.keywords}
            raw = function(*args, **kwargs)
            score, explanation, extras = normalize(raw)
        except MemoryError:
            return {"id": job_id, "ok": False, "kind": protocol.KIND_MEMORY,
                    "error_type": "MemoryError", "message": "the metric ran out of memory",
                    "retire": True}
        except InvalidResult as exc:
            return {"id": job_id, "ok": False, "kind": protocol.KIND_RESULT,
                    "error_type": "InvalidResult", "message": str(exc)}
        except BaseException as exc:  # anything metric code raises is reported as data
            line, trace = _user_frames(exc)
            kind = protocol.KIND_POLICY if isinstance(exc, PolicyViolation) else (
                protocol.KIND_RUNTIME)
            return {"id": job_id, "ok": False, "kind": kind,
                    "error_type": type(exc).__name__, "message": _message(exc),
                    "line": line, "traceback": trace, "logs": prints.text()}
        return {"id": job_id, "ok": True, "score": score, "explanation": explanation,
                "extras": extras, "logs": prints.text(),
                "duration_ms": (time.perf_counter() - started) * 1000}


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(protocol.encode(message))


def _encode_reply(reply: dict[str, Any], limit: int) -> bytes:
    """The reply line, or an output-limit error if the metric's part is too large."""
    try:
        line = protocol.encode(reply)
    except (TypeError, ValueError) as exc:  # e.g. a string with lone surrogates
        return protocol.encode({"id": reply.get("id"), "ok": False,
                                "kind": protocol.KIND_RESULT, "error_type": "InvalidResult",
                                "message": f"result cannot be encoded: {exc}"[:500],
                                "retire": reply.get("retire", False)})
    if len(line) > limit:
        return protocol.encode({"id": reply.get("id"), "ok": False,
                                "kind": protocol.KIND_OUTPUT, "error_type": "OutputTooLarge",
                                "message": f"the result is {len(line)} bytes; the limit is "
                                f"{limit}", "retire": reply.get("retire", False)})
    return line


def serve(sock: socket.socket, limits: SandboxLimits) -> None:
    """Answer jobs on ``sock`` until told to stop; returns when the worker should exit."""
    reader = protocol.LineReader(sock, protocol.MAX_REQUEST_BYTES)
    executor = _Executor(limits)
    jobs = 0
    while True:
        line = reader.readline()
        if line is None:
            return
        job = protocol.decode(line)
        reply = executor.run(job)
        jobs += 1
        retire = bool(reply.get("retire")) or jobs >= limits.max_jobs_per_worker or (
            oslimits.cpu_used() > limits.cpu_budget_s)
        reply["retire"] = retire
        sock.sendall(_encode_reply(reply, limits.max_output_bytes))
        if retire:
            return


def main(channel_fd: int, limits_wire: dict[str, Any], network: str | None,
         zygote_pid: int) -> None:
    """Entry of a freshly forked worker: isolate, announce, serve, exit. Never returns."""
    code = protocol.EXIT_OK
    try:
        limits = SandboxLimits.from_wire(limits_wire)
        sock = socket.socket(fileno=channel_fd)
        try:
            report = oslimits.isolate_worker(limits, channel_fd, network, zygote_pid)
        except OSError as exc:
            _send(sock, {"type": "setup_failed", "error": str(exc)})
            code = protocol.EXIT_SETUP
        else:
            sys.dont_write_bytecode = True
            sys.setrecursionlimit(1000)
            _send(sock, {"type": "ready", "isolation": report.to_wire()})
            serve(sock, limits)
    except MemoryError:
        code = protocol.EXIT_MEMORY
    except BaseException:  # whatever happens, leave without running cleanup code
        code = protocol.EXIT_PROTOCOL
    os._exit(code)
