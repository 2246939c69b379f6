"""SandboxPool: run metric code in isolated worker processes, and survive anything it does.

The pool keeps ``size`` workers ready, forked from its zygote
(``apiary.dataplane.evaluation.sandbox.zygote``). One job runs in one worker at a time; the pool
sends the job as a JSON line and reads one line back, with the wall-clock timeout. Whatever happens
to the worker — timeout, death by a kernel limit, a crash, an oversized or malformed reply — the
pool kills it if needed, raises a :class:`~apiary.errors.SandboxError` for that job, and forks a
replacement in the background, so the next job finds a healthy worker.

Isolation keys: a worker serves jobs of one key only (the first it gets); a job of
another key gets a fresh worker. The evaluation service passes the project id, so code
from two projects never shares a process. Jobs without a key share workers.

Nothing here unpickles or evaluates what a worker sends: replies are JSON, re-validated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from apiary.dataplane.evaluation.sandbox import protocol, zygote
from apiary.dataplane.evaluation.sandbox.compiler import CompiledMetric, compile_metric
from apiary.dataplane.evaluation.sandbox.limits import SandboxLimits
from apiary.dataplane.evaluation.sandbox.result import InvalidResult, MetricResult, from_reply
from apiary.errors import (
    ConfigurationError,
    SandboxCompileError,
    SandboxError,
    SandboxResourceLimit,
    SandboxRuntimeError,
    SandboxTimeout,
    SandboxUnavailable,
)

log = logging.getLogger("apiary.dataplane.evaluation.sandbox")

_EXIT_STATUS_WAIT_S = 2.0
_MAX_CONSECUTIVE_SPAWN_FAILURES = 3
_COMPILE_CACHE_SIZE = 256
_SHARED_KEY = ""
# The directory holding the ``apiary`` package, for the zygote's import path.
_APIARY_ROOT = str(Path(zygote.__file__).resolve().parents[4])


@dataclass
class PoolStats:
    """Counters for tests, benchmarks and metrics."""

    zygotes_started: int = 0
    workers_started: int = 0
    workers_lost: int = 0  # killed, crashed, retired or recycled
    jobs: int = 0
    grown: int = 0  # workers added because jobs waited
    shrunk: int = 0  # of those, given up again once none waited
    last_fork_ms: float = 0.0  # fork request → worker ready, the last replacement
    zygote_preload_s: float = 0.0


class _WorkerGone(Exception):
    pass


class _BadReply(Exception):
    pass


class _Worker:
    """The pool's handle on one worker process."""

    def __init__(self, pid: int, pidfd: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, isolation: dict[str, Any]) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.reader = reader
        self.writer = writer
        self.isolation = isolation
        self.jobs = 0
        self.key: str | None = None
        self.closed = False

    async def call(self, line: bytes) -> dict[str, Any]:
        self.writer.write(line)
        await self.writer.drain()
        reply = await self.reader.readline()  # ValueError past the reader's limit
        if not reply.endswith(b"\n"):
            raise _WorkerGone
        try:
            return protocol.decode(reply)
        except ValueError:
            raise _BadReply from None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        os.close(self.pidfd)


class _Zygote:
    """The pool's handle on its zygote process."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket,
                 info: dict[str, Any]) -> None:
        self.process = process
        self.control = control
        self.info = info
        self.fork_lock = asyncio.Lock()
        self.exits: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.alive = True
        self.reader_task = asyncio.create_task(self._read_exits())

    @classmethod
    async def start(cls, timeout_s: float) -> _Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        apiary_root = _APIARY_ROOT
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", zygote.BOOTSTRAP, apiary_root,
                str(theirs.fileno()), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, pass_fds=[theirs.fileno()],
                env=dict(zygote.ENVIRONMENT), cwd="/")
        finally:
            theirs.close()
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
            info = json.loads(line) if line else {"event": "failed", "error": "exited"}
        except (TimeoutError, ValueError) as exc:
            info = {"event": "failed", "error": f"no ready message: {exc!r}"}
        if info.get("event") != "ready":
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            ours.close()
            raise SandboxUnavailable(f"sandbox zygote failed to start: {info.get('error')}")
        ours.settimeout(timeout_s)
        return cls(process, ours, info)

    async def _read_exits(self) -> None:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                break
            try:
                message = json.loads(line)
                pid = int(message["pid"])
            except (ValueError, KeyError, TypeError):
                continue
            waiter = self.waiters.pop(pid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
            else:
                self.exits[pid] = message
                while len(self.exits) > 1024:
                    self.exits.popitem(last=False)
        self.alive = False
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(_WorkerGone())

    async def exit_status(self, pid: int) -> dict[str, Any] | None:
        """How worker ``pid`` ended, as the zygote saw it; None if it cannot tell."""
        if pid in self.exits:
            return self.exits.pop(pid)
        if not self.alive:
            return None
        waiter = self.waiters.setdefault(pid, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(waiter, _EXIT_STATUS_WAIT_S)
        except (TimeoutError, _WorkerGone):
            return None
        finally:
            self.waiters.pop(pid, None)

    def _fork_blocking(self, request: bytes) -> tuple[int, int, socket.socket]:
        ours, theirs = socket.socketpair()
        try:
            socket.send_fds(self.control, [request], [theirs.fileno()])
        finally:
            theirs.close()
        message, fds, _, _ = socket.recv_fds(self.control, 4096, 1)
        if not message or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            ours.close()
            raise ConnectionError("the sandbox zygote did not answer a fork request")
        return int(json.loads(message)["pid"]), fds[0], ours

    async def fork(self, limits: SandboxLimits, timeout_s: float) -> _Worker:
        request = json.dumps({"op": "fork", "limits": limits.to_wire()}).encode()
        async with self.fork_lock:
            pid, pidfd, sock = await asyncio.to_thread(self._fork_blocking, request)
        reader, writer = await asyncio.open_connection(
            sock=sock, limit=limits.max_output_bytes + protocol.FRAME_SLACK)
        try:
            hello = protocol.decode(await asyncio.wait_for(reader.readline(), timeout_s))
        except (TimeoutError, ValueError) as exc:
            hello = {"type": "setup_failed", "error": f"no ready message: {exc!r}"}
        worker = _Worker(pid, pidfd, reader, writer, hello.get("isolation") or {})
        if hello.get("type") != "ready":
            worker.kill()
            worker.close()
            raise SandboxUnavailable(f"sandbox worker failed to start: {hello.get('error')}")
        return worker

    async def stop(self) -> None:
        self.alive = False
        self.control.close()  # the zygote exits on EOF, killing its workers
        try:
            await asyncio.wait_for(self.process.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self.reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader_task


def _check_isolation(isolation: dict[str, Any], limits: SandboxLimits) -> None:
    gaps = []
    if not isolation.get("network"):
        gaps.append("network namespace")
    if not isolation.get("seccomp"):
        gaps.append("seccomp filter")
    if not isolation.get("landlock_abi"):
        gaps.append("Landlock")
    if isolation.get("uid") == 0 and isolation.get("capabilities") != 0:
        gaps.append("unprivileged uid or dropped capabilities")
    if not isolation.get("no_new_privs"):
        gaps.append("no_new_privs")
    if not gaps:
        return
    if limits.allow_degraded_isolation:
        log.warning("sandbox workers run without: %s", ", ".join(gaps))
        return
    raise ConfigurationError(
        "sandbox workers cannot be isolated (missing: " + ", ".join(gaps) + "); run Apiary "
        "as root or where unprivileged user namespaces, seccomp and Landlock (Linux >= 5.13) "
        "are available, or set APIARY_SANDBOX_ALLOW_DEGRADED_ISOLATION=true to accept it")


def _death_error(status: dict[str, Any] | None, limits: SandboxLimits) -> SandboxError:
    if status is None:
        return SandboxUnavailable("the sandbox worker vanished (its zygote stopped)")
    sig, code = status.get("signal"), status.get("code")
    if sig == signal.SIGXCPU:
        return SandboxResourceLimit(
            f"the metric used more than {limits.cpu_s} CPU seconds", limit="cpu")
    if sig == signal.SIGKILL:
        return SandboxResourceLimit("the kernel killed the metric's worker", limit="killed")
    if code == protocol.EXIT_MEMORY:
        return SandboxResourceLimit("the metric ran out of memory", limit="memory")
    what = f"signal {signal.Signals(sig).name}" if isinstance(sig, int) and sig > 0 else (
        f"exit code {code}")
    return SandboxRuntimeError(f"the metric's worker process crashed ({what})")


def _str_field(reply: dict[str, Any], key: str, limit: int) -> str | None:
    value = reply.get(key)
    return value[:limit] if isinstance(value, str) else None


def _failure(reply: dict[str, Any], limits: SandboxLimits) -> SandboxError:
    kind = reply.get("kind")
    message = _str_field(reply, "message", 2000) or "no message"
    error_type = _str_field(reply, "error_type", 100)
    line = reply.get("line") if isinstance(reply.get("line"), int) else None
    if kind == protocol.KIND_COMPILE:
        return SandboxCompileError(message, line=line)
    if kind == protocol.KIND_MEMORY:
        return SandboxResourceLimit(
            f"the metric ran out of memory (limit {limits.memory_mb} MiB)", limit="memory")
    if kind == protocol.KIND_OUTPUT:
        return SandboxResourceLimit(message, limit="output")
    if kind == protocol.KIND_RESULT:
        return SandboxRuntimeError(f"the metric returned an unusable value: {message}",
                                   error_type="InvalidResult")
    return SandboxRuntimeError(f"{error_type}: {message}", error_type=error_type, line=line,
                               traceback=_str_field(reply, "traceback", 4000),
                               policy=kind == protocol.KIND_POLICY or None)


def _encode_job(job_id: int, code: str, event: dict[str, Any], ground_truth: Any) -> bytes:
    body = {"id": job_id, "code": code, "event": event, "ground_truth": ground_truth}
    # str() for what JSON lacks (Decimal, UUID, numpy scalars); datetimes become ISO 8601.
    return orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"


class SandboxPool:
    """A pool of isolated workers running user Python metrics.

    ``await pool.run(code, event)`` returns a :class:`MetricResult` or raises a
    :class:`~apiary.errors.SandboxError`; the pool stays usable after any failure. At most
    ``size`` jobs run at once; more wait, and make the pool grow (one worker per waiting
    job, up to ``max_size``; back to ``size`` once none waits). Start with
    ``await pool.start()`` (or let the first ``run`` do it) and end with
    ``await pool.close()``; ``async with`` does both.
    """

    def __init__(self, size: int = 2, limits: SandboxLimits | None = None, *,
                 max_size: int | None = None, start_timeout_s: float = 120.0) -> None:
        if size < 1:
            raise ConfigurationError("a sandbox pool needs at least one worker")
        self.size = size
        #: The pool grows by one worker (up to ``max_size``) whenever a job finds every
        #: worker busy, and gives the extra workers up once no job waits.
        self.base_size = size
        self.max_size = max(size, max_size or size)
        self._waiting = 0
        self.limits = limits or SandboxLimits()
        self.start_timeout_s = start_timeout_s
        self.stats = PoolStats()
        self._zygote: _Zygote | None = None
        self._zygote_lock = asyncio.Lock()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._cond = asyncio.Condition()
        self._slots = asyncio.Semaphore(size)
        self._spawners: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._broken: Exception | None = None
        self._closed = False
        self._started = False
        self._next_id = 0
        self._compiled: OrderedDict[str, CompiledMetric] = OrderedDict()

    async def __aenter__(self) -> SandboxPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the zygote and ``size`` workers; raises if isolation cannot be had."""
        if self._closed:
            raise SandboxUnavailable("the sandbox pool is closed")
        if self._started:
            return
        self._started = True
        self._replenish()
        await self.wait_full()

    async def wait_full(self) -> None:
        """Wait until the pool has all ``size`` workers (after start, or after losses)."""
        async with self._cond:
            while (len(self._workers) < self.size and self._broken is None
                   and not self._closed):
                await self._cond.wait()
        if self._broken is not None:
            raise self._broken

    async def close(self) -> None:
        """Kill every worker and the zygote. Jobs still running fail."""
        self._closed = True
        for task in list(self._spawners):
            task.cancel()
        for task in list(self._spawners):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in list(self._workers):
            worker.kill()
            worker.close()
        self._workers.clear()
        self._idle.clear()
        if self._zygote is not None:
            await self._zygote.stop()
            self._zygote = None
        async with self._cond:
            self._cond.notify_all()

    async def _ensure_zygote(self) -> _Zygote:
        async with self._zygote_lock:
            if self._zygote is None or not self._zygote.alive:
                if self._zygote is not None:
                    await self._zygote.stop()
                self._zygote = await _Zygote.start(self.start_timeout_s)
                self.stats.zygotes_started += 1
                self.stats.zygote_preload_s = float(self._zygote.info.get("preload_s", 0.0))
            return self._zygote

    def _replenish(self) -> None:
        """Fork workers in the background until ``size`` exist or are coming."""
        if self._closed:
            return
        while len(self._workers) + self._starting < self.size:
            self._starting += 1
            task = asyncio.create_task(self._spawn())
            self._spawners.add(task)
            task.add_done_callback(self._spawners.discard)

    async def _spawn(self) -> None:
        started = time.perf_counter()
        worker: _Worker | None = None
        error: Exception | None = None
        try:
            zyg = await self._ensure_zygote()
            worker = await zyg.fork(self.limits, self.start_timeout_s)
            _check_isolation(worker.isolation, self.limits)
        except ConfigurationError as exc:
            error = exc
            self._broken = exc  # no retry can fix the kernel's answer
        except (SandboxUnavailable, OSError, ConnectionError) as exc:
            error = exc
        finally:
            self._starting -= 1
        if error is not None:
            if worker is not None:
                worker.kill()
                worker.close()
            self._failures += 1
            log.warning("sandbox worker failed to start: %s", error)
            if self._failures >= _MAX_CONSECUTIVE_SPAWN_FAILURES and self._broken is None:
                self._broken = SandboxUnavailable(f"sandbox workers cannot start: {error}")
            async with self._cond:
                self._cond.notify_all()
            if self._broken is None:
                await asyncio.sleep(0.2 * self._failures)
                self._replenish()
            return
        assert worker is not None
        self._failures = 0
        self.stats.workers_started += 1
        self.stats.last_fork_ms = (time.perf_counter() - started) * 1000
        if self._closed:
            worker.kill()
            worker.close()
            return
        async with self._cond:
            self._workers.add(worker)
            self._idle.append(worker)
            self._cond.notify_all()

    async def _lose(self, worker: _Worker, *, kill: bool) -> None:
        """Forget a worker (killing it if ``kill``) and fork its replacement."""
        if kill:
            worker.kill()
        worker.close()
        self._workers.discard(worker)
        self.stats.workers_lost += 1
        self._replenish()

    # --- jobs ---------------------------------------------------------------------------

    def _pick(self, key: str) -> _Worker | None:
        for worker in self._idle:
            if worker.key == key:
                return worker
        for worker in self._idle:
            if worker.key is None:
                return worker
        return None

    async def _acquire(self, key: str) -> _Worker:
        async with self._cond:
            while True:
                if self._closed:
                    raise SandboxUnavailable("the sandbox pool is closed")
                if self._broken is not None:
                    raise self._broken
                worker = self._pick(key)
                if worker is not None:
                    self._idle.remove(worker)
                    worker.key = key
                    return worker
                if self._idle and self._starting == 0:
                    # Only workers bound to other keys are free: recycle one.
                    victim = self._idle.pop(0)
                    await self._lose(victim, kill=True)
                await self._cond.wait()

    async def _release(self, worker: _Worker) -> None:
        async with self._cond:
            if len(self._workers) > self.size:  # the pool shrank meanwhile
                self._workers.discard(worker)
                worker.kill()
                worker.close()
            else:
                self._idle.append(worker)
            self._cond.notify_all()

    def _compile(self, code: str) -> CompiledMetric:
        metric = self._compiled.get(code)
        if metric is None:
            metric = compile_metric(code, max_code_bytes=self.limits.max_code_bytes)
            self._compiled[code] = metric
            if len(self._compiled) > _COMPILE_CACHE_SIZE:
                self._compiled.popitem(last=False)
        return metric

    async def run(self, code: str, event: dict[str, Any], *, ground_truth: Any = None,
                  isolation_key: str | None = None) -> MetricResult:
        """Score ``event`` with the metric ``code``.

        ``ground_truth`` overrides ``event["feedback"]["ground_truth"]``. Raises
        :class:`~apiary.errors.SandboxCompileError` before any worker is involved if the
        code is rejected, and another :class:`~apiary.errors.SandboxError` if the run
        fails; never leaves the pool without its workers.
        """
        self._compile(code)
        await self.start()
        key = isolation_key or _SHARED_KEY
        self._waiting += 1
        try:
            if self._slots.locked() and self.size < self.max_size:
                self._grow()
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            worker = await self._acquire(key)
            self._next_id += 1
            job_id = self._next_id
            self.stats.jobs += 1
            try:
                line = _encode_job(job_id, code, event, ground_truth)
            except TypeError as exc:
                await self._release(worker)
                raise SandboxRuntimeError(f"the event cannot be encoded: {exc}") from None
            return await self._call(worker, job_id, line)
        finally:
            await self._release_slot()

    def _grow(self) -> None:
        """One more worker and slot: a job found every worker busy."""
        self.size += 1
        self.stats.grown += 1
        self._slots.release()
        self._replenish()

    async def _release_slot(self) -> None:
        """Give the slot back; past ``base_size`` with no job waiting, retire it (and an
        idle worker) instead."""
        if self.size > self.base_size and self._waiting == 0 and not self._closed:
            self.size -= 1
            self.stats.shrunk += 1
            async with self._cond:
                if len(self._workers) > self.size and self._idle:
                    victim = self._idle.pop(0)
                    self._workers.discard(victim)
                    victim.kill()
                    victim.close()
            return
        self._slots.release()

    async def _call(self, worker: _Worker, job_id: int, line: bytes) -> MetricResult:
        try:
            reply = await asyncio.wait_for(worker.call(line), self.limits.timeout_s)
        except TimeoutError:
            await self._lose(worker, kill=True)
            raise SandboxTimeout(
                f"the metric ran longer than {self.limits.timeout_s} s and was stopped",
                limit=self.limits.timeout_s) from None
        except ValueError:
            # Longer than the reader's limit, or not JSON: never read the rest.
            await self._lose(worker, kill=True)
            raise SandboxResourceLimit(
                f"the metric's output exceeds {self.limits.max_output_bytes} bytes",
                limit="output") from None
        except _BadReply:
            await self._lose(worker, kill=True)
            raise SandboxRuntimeError("the sandbox worker sent a malformed reply") from None
        except (_WorkerGone, ConnectionError):
            await self._lose(worker, kill=True)
            status = None
            if self._zygote is not None:
                status = await self._zygote.exit_status(worker.pid)
            raise _death_error(status, self.limits) from None
        except BaseException:
            # Cancelled mid-job: the worker's state is unknown.
            await self._lose(worker, kill=True)
            raise
        worker.jobs += 1
        if reply.get("id") != job_id:
            await self._lose(worker, kill=True)
            raise SandboxRuntimeError("the sandbox worker answered out of turn")
        if reply.get("retire") is True:
            await self._lose(worker, kill=False)
        else:
            await self._release(worker)
        if reply.get("ok") is not True:
            raise _failure(reply, self.limits)
        try:
            return from_reply(reply)
        except InvalidResult as exc:
            raise SandboxRuntimeError(f"malformed result from the sandbox: {exc}") from None
