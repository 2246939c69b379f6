"""RestrictedPython's runtime hooks: the globals one metric evaluation runs with.

``compile_restricted`` rewrites ``a.b`` into ``_getattr_(a, "b")``, ``a[b]`` into
``_getitem_(a, b)``, ``for x in y`` into ``for x in _getiter_(y)``, ``a.b = c`` into
``_write_(a).b = c``, ``import m`` into a call of ``__builtins__["__import__"]``, and so on.
This module supplies those hooks and the builtins. Guarantees of this layer (best effort;
the OS layer in ``apiary.dataplane.evaluation.sandbox.oslimits`` is what contains a bypass):

- no attribute whose name starts with ``_``, no frame/code/generator internals, no
  ``str.format``/``format_map`` (format strings walk attributes unguarded), no ``obj``
  on exceptions (``AttributeError.obj`` hands out the object the lookup ran on);
- every value taken out by attribute, item or iteration passes
  :func:`~apiary.dataplane.evaluation.sandbox.allowlist.check_value`;
- imports only from the allowlist, as read-only :class:`SafeModule` proxies;
- writes (``a.b = c``, ``a[k] = v``) only into dicts, lists, sets, arrays, data frames and
  objects of classes the metric defined itself; never names starting with ``_``;
- no ``open``, ``eval``, ``exec``, ``compile``, ``type``, ``vars``, ``dir``, ``globals``.
"""

from __future__ import annotations

import builtins
import operator
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
)

from apiary.dataplane.evaluation.sandbox.allowlist import (
    DENIED_ATTRIBUTES,
    PolicyViolation,
    SafeModule,
    check_value,
    checked_iter,
    import_allowed,
    provide,
    safe_module,
)

# Methods of pandas objects that take a function *name* and resolve it with a raw
# getattr on the object (``df.agg("__dict__")``): strings starting with "_" are refused.
_PANDAS_NAME_DISPATCH = frozenset({
    "agg", "aggregate", "apply", "transform", "map", "applymap", "pipe", "groupby",
})
# Methods of pandas objects that write to a path when given one: allowed without it.
_PANDAS_PATH_WRITERS = frozenset({
    "to_csv", "to_json", "to_string", "to_html", "to_markdown", "to_latex", "to_xml",
})
_PATH_ARGUMENTS = ("path_or_buf", "buf", "path")


def _in_package(obj: object, package: str) -> bool:
    # pandas reports its public classes as module "pandas", the rest as "pandas.core...".
    # A class counts as its own package's, so pd.DataFrame.agg(df, "__dict__") is guarded
    # like df.agg("__dict__").
    module = obj.__module__ if isinstance(obj, type) else type(obj).__module__
    return module == package or module.startswith(package + ".")


def _refuse_private_strings(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, str) and value.startswith("_"):
            raise PolicyViolation(f"function names starting with '_' are not allowed: {value!r}")
        if isinstance(value, (list, tuple)):
            _refuse_private_strings(value)
        elif isinstance(value, dict):
            _refuse_private_strings(value.keys())
            _refuse_private_strings(value.values())


def _name_dispatch_guard(method: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _refuse_private_strings(args)
        _refuse_private_strings(kwargs.values())
        return method(*args, **kwargs)
    return guarded


def _no_path_guard(method: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if (args and args[0] is not None) or any(
                kwargs.get(name) is not None for name in _PATH_ARGUMENTS):
            raise PolicyViolation("writing to a file or buffer is not allowed in metrics; "
                                  "call it without a path to get a string")
        return method(*args, **kwargs)
    return guarded


_MISSING = object()


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``_getattr_`` and the ``getattr`` builtin of metric code."""
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in DENIED_ATTRIBUTES:
        raise PolicyViolation(f"access to attribute {name!r} is not allowed in metrics")
    if name in ("format", "format_map") and (
            isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))):
        # "{0.__class__}".format(x) walks attributes without our getattr (CVE-2023-41039).
        raise PolicyViolation("str.format is not allowed in metrics; use f-strings or %")
    if name == "obj" and isinstance(obj, BaseException):
        raise PolicyViolation("exception attribute 'obj' is not allowed in metrics")
    if isinstance(obj, SafeModule):
        module = obj
    elif isinstance(obj, types.ModuleType):
        # A raw module that reached metric code anyhow: only its allowed view.
        module = safe_module(obj)
    else:
        module = None
    try:
        value = module.sandbox_lookup(name) if module is not None else getattr(obj, name)
    except AttributeError as exc:
        if default is _MISSING:
            # A fresh error with the same text: the interpreter's would carry ``obj``.
            raise AttributeError(str(exc)) from None
        return default
    if module is None and _in_package(obj, "pandas"):
        if name in _PANDAS_NAME_DISPATCH:
            return _name_dispatch_guard(value)
        if name in _PANDAS_PATH_WRITERS:
            return _no_path_guard(value)
    return check_value(value)


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
    except (AttributeError, PolicyViolation):
        return False
    return True


def guarded_getitem(obj: Any, index: Any) -> Any:
    """``_getitem_``: ``obj[index]``, with the value checked."""
    return check_value(obj[index])


def guarded_iter(obj: Any, *sentinel: Any) -> Iterator[Any]:
    """``_getiter_`` and the ``iter`` builtin: every element checked."""
    if sentinel:
        return checked_iter(iter(obj, *sentinel))
    return checked_iter(obj)


def guarded_next(iterator: Iterator[Any], *default: Any) -> Any:
    return check_value(next(iterator, *default))


# Types whose instances metric code may write into (items and, for sets, members).
_WRITABLE_CONTAINERS = frozenset({dict, list, set, bytearray})


class _ItemsOnly:
    """What ``_write_`` returns for arrays and data frames: item writes pass, attribute
    writes (``arr.shape = ...``, ``df.x = ...``) do not."""

    __slots__ = ("_target",)
    _target: Any

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._target[key]

    def __setattr__(self, name: str, value: Any) -> None:
        raise PolicyViolation(f"cannot set attributes of {type(self._target).__name__} objects")

    def __delattr__(self, name: str) -> None:
        raise PolicyViolation(f"cannot delete attributes of {type(self._target).__name__} objects")


class _ReadOnly(_ItemsOnly):
    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        raise PolicyViolation(f"cannot modify {type(self._target).__name__} objects in metrics")

    def __delitem__(self, key: Any) -> None:
        raise PolicyViolation(f"cannot modify {type(self._target).__name__} objects in metrics")


def guarded_write(obj: Any) -> Any:
    """``_write_``: the object itself if metric code may write into it, else a proxy."""
    cls = type(obj)
    if cls in _WRITABLE_CONTAINERS or getattr(cls, "_sandbox_metric_class", False):
        return obj
    if _in_package(obj, "numpy") or _in_package(obj, "pandas"):
        return _ItemsOnly(obj)
    return _ReadOnly(obj)


def guarded_setattr(obj: Any, name: str, value: Any) -> None:
    if type(name) is not str or name.startswith("_"):
        raise PolicyViolation("attribute names starting with '_' cannot be set in metrics")
    setattr(guarded_write(obj), name, value)


def guarded_delattr(obj: Any, name: str) -> None:
    if type(name) is not str or name.startswith("_"):
        raise PolicyViolation("attribute names starting with '_' cannot be deleted in metrics")
    delattr(guarded_write(obj), name)


def metric_class(name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
    """``__metaclass__`` of classes defined by metric code: marks them writable, so that
    ``self.x = 1`` works in their methods (RestrictedPython refuses it otherwise)."""
    namespace["_sandbox_metric_class"] = True
    # type() picks the most derived metaclass of the bases, as a class statement would.
    return builtins.type(name, bases, namespace)


# Modules C functions import on their own while a metric frame is current. The zygote
# preloads them (allowlist.PRELOAD), so the import is a dictionary lookup.
_INTERNAL_IMPORTS = frozenset({"_strptime"})


def guarded_import(name: str, globals: Any = None, locals: Any = None,
                   fromlist: Any = (), level: int = 0) -> SafeModule:
    """``__import__`` of metric code: allowlisted absolute imports, as proxies."""
    if level != 0:
        raise PolicyViolation("relative imports are not allowed in metrics")
    if type(name) is not str:
        raise TypeError("module name must be a string")
    if name in _INTERNAL_IMPORTS and name in sys.modules:
        # C code called from a metric frame imports through that frame's builtins
        # (datetime.strptime imports _strptime). Metric code itself cannot ask for these:
        # its import statements are checked against the allowlist at compile time and
        # ``__import__`` is not a name it can write.
        return sys.modules[name]  # type: ignore[return-value]
    if fromlist:
        return import_allowed(name)
    # ``import a.b`` binds ``a``: check the full name, return the top-level package.
    import_allowed(name)
    return import_allowed(name.partition(".")[0])


def apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``_apply_``: calls written with ``*args`` or ``**kwargs``."""
    return func(*args, **kwargs)


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "|=": operator.ior,
    "^=": operator.ixor, "&=": operator.iand, "@=": operator.imatmul,
}


def inplacevar(op: str, target: Any, value: Any) -> Any:
    """``_inplacevar_``: ``x += y`` on a plain name."""
    return _INPLACE[op](target, value)


class PrintBuffer:
    """Where ``print`` in metric code goes: kept (up to ``limit`` characters) and returned
    with the result as ``logs``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False

    def write(self, text: str) -> None:
        room = self.limit - self.size
        if len(text) > room:
            self.truncated = True
            text = text[:room]
        self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts) + ("\n[output truncated]" if self.truncated else "")

    def collector(self, _getattr: object = None) -> _PrintCollector:
        return _PrintCollector(self)


class _PrintCollector:
    """The ``_print`` object RestrictedPython's rewritten ``print`` calls."""

    def __init__(self, buffer: PrintBuffer) -> None:
        self.buffer = buffer

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        sep = kwargs.get("sep")
        end = kwargs.get("end")
        sep = " " if sep is None else str(sep)
        end = "\n" if end is None else str(end)
        self.buffer.write(sep.join(str(o) for o in objects) + end)

    def __call__(self) -> str:
        # ``printed`` in metric code: what was printed so far.
        return self.buffer.text()


_EXTRA_BUILTINS: dict[str, Any] = {
    name: getattr(builtins, name) for name in (
        "dict", "list", "set", "frozenset", "tuple", "enumerate", "zip", "map", "filter",
        "reversed", "sorted", "sum", "min", "max", "any", "all", "format", "ascii", "bin",
        "bytearray", "bytes", "object", "property", "staticmethod", "classmethod",
        "NotImplemented",
    )
}
_REMOVED_BUILTINS = ("BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit",
                     "setattr", "delattr", "_getattr_")

_BUILTINS: dict[str, Any] = {
    **{k: v for k, v in safe_builtins.items() if k not in _REMOVED_BUILTINS},
    **_EXTRA_BUILTINS,
    "__import__": guarded_import,
    "getattr": guarded_getattr,
    "hasattr": guarded_hasattr,
    "setattr": guarded_setattr,
    "delattr": guarded_delattr,
    "iter": guarded_iter,
    "next": guarded_next,
}
provide(guarded_getattr, guarded_hasattr, guarded_setattr, guarded_delattr, guarded_iter,
        guarded_next, guarded_import)


def restricted_globals(prints: PrintBuffer) -> dict[str, Any]:
    """Fresh globals for one evaluation: nothing a previous evaluation bound survives."""
    return {
        "__builtins__": dict(_BUILTINS),
        "__name__": "metric",
        "__metaclass__": metric_class,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": guarded_iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_apply_": apply,
        "_inplacevar_": inplacevar,
        "_print_": prints.collector,
    }
