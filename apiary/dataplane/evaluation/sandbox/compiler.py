"""Metric source → a checked, restricted code object and how to call it.

:func:`compile_metric` is what the API calls when a metric is defined (a
:class:`~apiary.errors.SandboxCompileError` becomes a 400 naming the line) and what every
worker calls before running one. It parses only, never executes, so it is safe in the
API process; the size limit is checked before the parser sees the source.

A metric is source code defining one function. Which function, and what it receives:

- ``evaluate`` if defined, else ``metric``, else the only top-level function (HoneyHive
  names Python metrics after the metric, e.g. ``def num_words(event)``);
- its parameters are bound by name: ``event`` (the whole event), ``ground_truth``, or any
  event field (``inputs``, ``outputs``, ``metadata``, ``feedback``, ``config``, ...), so
  ``def evaluate(event)`` and ``def metric(inputs, outputs, ground_truth, metadata)`` both
  work;
- a function whose parameter names are not all recognised gets HoneyHive's client-side
  evaluator order: one parameter → the event; two → ``(outputs, inputs)``; three →
  ``(outputs, inputs, ground_truth)`` (``honeyhive.experiments.core._eval_call_args``).

It returns a number, a bool, a string, a one-element list of one, ``None`` (no score), or
a dict with ``score``, optional ``explanation`` and further scalar entries (extras), as
HoneyHive's ``EvaluatorMetricResult.from_raw`` accepts.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from types import CodeType

from RestrictedPython.compile import compile_restricted_exec

from apiary.dataplane.evaluation.sandbox.allowlist import ALLOWED_IMPORTS
from apiary.errors import SandboxCompileError

FILENAME = "<metric>"
ENTRY_NAMES = ("evaluate", "metric")
EVENT_FIELDS = frozenset({
    "event_id", "session_id", "parent_id", "event_type", "event_name", "source", "config",
    "inputs", "outputs", "error", "start_time", "end_time", "duration", "metadata",
    "metrics", "feedback", "user_properties", "project_id",
})
PARAMETER_NAMES = EVENT_FIELDS | {"event", "ground_truth"}
_HONEYHIVE_ORDER = {1: ("event",), 2: ("outputs", "inputs"),
                    3: ("outputs", "inputs", "ground_truth")}
DEFAULT_MAX_CODE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CompiledMetric:
    """A metric that passed every compile-time check.

    ``positional`` and ``keywords`` name what the entry function receives, each one of
    :data:`PARAMETER_NAMES`.
    """

    code: CodeType
    entry: str
    positional: tuple[str, ...]
    keywords: tuple[str, ...]
    imports: tuple[str, ...]
    sha256: str


def _reject(message: str, line: int | None = None) -> SandboxCompileError:
    return SandboxCompileError(message, line=line)


def _entry_function(tree: ast.Module) -> ast.FunctionDef:
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name in ENTRY_NAMES:
        if name in functions:
            return functions[name]
    if len(functions) == 1:
        return next(iter(functions.values()))
    if not functions:
        raise _reject("a metric must define a function, e.g. 'def evaluate(event): ...'")
    raise _reject("several functions are defined: name the one to run 'evaluate' "
                  f"(found {', '.join(sorted(functions))})")


def _binding(func: ast.FunctionDef) -> tuple[tuple[str, ...], tuple[str, ...]]:
    args = func.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    required = len(positional) - len(args.defaults)
    keyword_required = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                        if d is None]
    unknown_keywords = [name for name in keyword_required if name not in PARAMETER_NAMES]
    if unknown_keywords:
        raise _reject(f"{func.name}() has keyword-only parameters the sandbox cannot fill: "
                      f"{', '.join(unknown_keywords)}", func.lineno)
    keywords = tuple(a.arg for a in args.kwonlyargs if a.arg in PARAMETER_NAMES)
    if all(name in PARAMETER_NAMES for name in positional[:required]):
        # By name; optional parameters with names we know are filled too.
        bound: list[str] = []
        for name in positional:
            if name not in PARAMETER_NAMES:
                break
            bound.append(name)
        return tuple(bound), keywords
    order = _HONEYHIVE_ORDER.get(required)
    if order is None:
        raise _reject(
            f"{func.name}() takes {required} required parameters with unknown names; use "
            "'event', or names from: " + ", ".join(sorted(PARAMETER_NAMES)), func.lineno)
    return order, keywords


def _check_imports(tree: ast.Module) -> tuple[str, ...]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise _reject("relative imports are not allowed", node.lineno)
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            if module not in ALLOWED_IMPORTS:
                raise _reject(
                    f"import of {module!r} is not allowed; metrics may import: "
                    + ", ".join(sorted(ALLOWED_IMPORTS)), node.lineno)
            names.append(module)
    return tuple(dict.fromkeys(names))


def compile_metric(source: str, *, max_code_bytes: int = DEFAULT_MAX_CODE_BYTES
                   ) -> CompiledMetric:
    """Check and compile metric ``source``, or raise :class:`SandboxCompileError`.

    Runs no user code. Checks, in order: the type and size of the source, Python syntax,
    the entry point and its parameters, imports against the allowlist, and
    RestrictedPython's policy (no ``_`` names, no frame/generator internals, no
    ``try/except*``, no ``exec``/``eval``, no async, ...).
    """
    if not isinstance(source, str):
        raise _reject("metric code must be a string")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > max_code_bytes:
        raise SandboxCompileError(
            f"metric code is {size} bytes; the limit is {max_code_bytes}",
            size=size, limit=max_code_bytes)
    try:
        tree = ast.parse(source, FILENAME)
        entry = _entry_function(tree)
        positional, keywords = _binding(entry)
        imports = _check_imports(tree)
        result = compile_restricted_exec(source, FILENAME)
    except SyntaxError as exc:
        raise _reject(f"syntax error: {exc.msg}", exc.lineno) from None
    except ValueError as exc:  # e.g. NUL bytes in the source
        raise _reject(f"invalid source: {exc}") from None
    except (RecursionError, MemoryError):
        # CPython's parser and RestrictedPython's transformer are recursive: very deep
        # nesting ends here, not in a crash (the size limit bounds the work).
        raise _reject("metric code is nested too deeply") from None
    if result.errors or result.code is None:
        raise _reject("metric code is not allowed: " + "; ".join(result.errors))
    return CompiledMetric(
        code=result.code,
        entry=entry.name,
        positional=positional,
        keywords=keywords,
        imports=imports,
        sha256=hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(),
    )
