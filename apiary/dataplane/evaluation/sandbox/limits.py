"""The limits one sandbox pool enforces, and where each comes from.

:class:`SandboxLimits` is plain data: the pool sends it to every worker it starts, and the
worker applies it to itself before it reads its first job. ``from_settings`` maps the
``APIARY_SANDBOX_*`` settings onto it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from apiary.errors import ConfigurationError

if TYPE_CHECKING:
    from apiary.settings import ApiarySettings

KiB = 1024


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """What one metric evaluation may use. Enforced as follows (see
    ``apiary.dataplane.evaluation.sandbox``):

    - ``cpu_s``: RLIMIT_CPU, reset before every evaluation; the kernel ends the worker
      with SIGXCPU once the evaluation has used this many CPU seconds.
    - ``timeout_s``: wall clock, enforced by the parent, which kills the worker.
    - ``memory_mb``: RLIMIT_AS = the worker's address space after preloading + this.
    - ``max_open_files``: RLIMIT_NOFILE.
    - ``max_code_bytes``: checked before the source is parsed (parent and worker).
    - ``max_output_bytes``: checked by the worker before it answers, and again by the
      parent, which reads no more than this (plus framing) from a worker.
    - ``max_jobs_per_worker``: after this many evaluations the worker exits and a fresh
      process takes its place, so state left in a process cannot grow without bound.
    - ``sandbox_uid``: the unprivileged uid/gid workers switch to when started as root.
    - ``allow_degraded_isolation``: start workers even when the kernel refuses the network
      namespace, seccomp or Landlock (never the rlimits, which cannot be refused).
    """

    cpu_s: int = 5
    timeout_s: float = 10.0
    memory_mb: int = 512
    max_open_files: int = 16
    max_code_bytes: int = 64 * KiB
    max_output_bytes: int = 64 * KiB
    max_jobs_per_worker: int = 1000
    sandbox_uid: int = 65534
    allow_degraded_isolation: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.cpu_s < 1:
            problems.append("cpu_s must be at least 1 (RLIMIT_CPU counts whole seconds)")
        if self.timeout_s <= 0:
            problems.append("timeout_s must be positive")
        if self.memory_mb < 16:
            problems.append("memory_mb must be at least 16")
        if self.max_open_files < 8:
            problems.append("max_open_files must be at least 8 (the worker needs a few)")
        if self.max_code_bytes < 1 or self.max_output_bytes < 1024:
            problems.append("max_code_bytes must be positive and max_output_bytes >= 1024")
        if self.max_jobs_per_worker < 1:
            problems.append("max_jobs_per_worker must be at least 1")
        if self.sandbox_uid < 1:
            problems.append("sandbox_uid must not be root (0)")
        if problems:
            raise ConfigurationError("invalid sandbox limits: " + "; ".join(problems))

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * KiB * KiB

    @property
    def cpu_budget_s(self) -> int:
        """CPU seconds after which a worker retires: it starts no evaluation that could
        not get its full ``cpu_s`` under the hard RLIMIT_CPU (``cpu_budget_s + cpu_s``)."""
        return max(60, 10 * self.cpu_s)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SandboxLimits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_settings(cls, settings: ApiarySettings) -> SandboxLimits:
        return cls(
            cpu_s=settings.sandbox_cpu_s,
            timeout_s=settings.sandbox_timeout_s,
            memory_mb=settings.sandbox_memory_mb,
            max_open_files=settings.sandbox_max_open_files,
            max_code_bytes=settings.sandbox_max_code_bytes,
            max_output_bytes=settings.sandbox_max_output_bytes,
            max_jobs_per_worker=settings.sandbox_max_jobs_per_worker,
            sandbox_uid=settings.sandbox_uid,
            allow_degraded_isolation=settings.sandbox_allow_degraded_isolation,
        )
