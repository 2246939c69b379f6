"""What metric code may reach: the importable modules, and the values it may hold.

This is the RestrictedPython layer's view of the world, and it is best effort: it removes
the known ways from an allowed module to the operating system (``statistics.sys``,
``numpy.load``, ``pandas.read_csv``, ``string.Formatter``, ``functools.update_wrapper``,
...), but pandas, numpy and scikit-learn are large and a way it misses is contained by the
worker's OS isolation (``apiary.dataplane.evaluation.sandbox.oslimits``), which is what the sandbox
guarantees.

Two mechanisms:

- :class:`SafeModule`: what ``import numpy`` gives metric code. An immutable namespace
  with the module's public names minus a deny list; submodules appear only when they are
  on the import allowlist themselves, as their own ``SafeModule``. It has no ``__name__``,
  so ``from numpy import lib`` cannot fall back to ``sys.modules['numpy.lib']``.
- :func:`check_value`: applied by the guards to everything an attribute access, an item
  access or an iteration hands to metric code. It turns a raw allowed module into its
  ``SafeModule`` and refuses raw modules, frames, code objects, tracebacks, the dangerous
  builtins (``eval``, ``open``, ``getattr``, ``type``, ...) and anything that belongs to a
  module that reaches the OS (``os``, ``sys``, ``subprocess``, ``socket``, ``io``, ...).
"""

from __future__ import annotations

import builtins
import functools
import importlib
import operator
import types
from collections.abc import Iterable, Iterator
from typing import Any

from RestrictedPython.transformer import INSPECT_ATTRIBUTES


class PolicyViolation(Exception):  # named for metric authors, who see it
    """Raised into metric code when it reaches for something the sandbox refuses."""


# Modules metric code may import (exact names; a package's submodules are listed one by
# one). The standard-library part is the brief's list; the rest are the libraries the
# seeds' metrics use.
ALLOWED_IMPORTS = frozenset({
    "math", "statistics", "re", "json", "datetime", "collections", "collections.abc",
    "itertools", "functools", "difflib", "string",
    "numpy", "numpy.linalg", "numpy.random", "numpy.fft",
    "pandas",
    "jsonschema",
    "sklearn", "sklearn.metrics", "sklearn.metrics.pairwise", "sklearn.feature_extraction",
    "sklearn.feature_extraction.text", "sklearn.preprocessing", "sklearn.linear_model",
    "sklearn.cluster", "sklearn.decomposition", "sklearn.neighbors", "sklearn.naive_bayes",
})

# Imported once by the zygote, before any worker exists: workers are forked from it, so
# they start with these in memory (shared copy-on-write) and never import them under
# their limits. ``_strptime`` is what ``datetime.strptime`` imports on first use.
PRELOAD = (*sorted(ALLOWED_IMPORTS), "_strptime")

# Public names a module does not export to metric code. Modules (numpy.lib, numpy.testing,
# pandas.io, ...) need no entry: a submodule is exported only if it is allowed.
_MODULE_DENY: dict[str, frozenset[str]] = {
    # File and pickle I/O, and process-wide state another tenant's metric would see.
    "numpy": frozenset({
        "load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
        "fromfile", "fromregex", "memmap", "DataSource", "show_config", "show_runtime", "info",
        "set_printoptions", "printoptions", "seterr", "seterrcall", "setbufsize",
        "get_include", "test",
    }),
    "pandas": frozenset({
        "eval", "set_option", "reset_option", "option_context", "options", "describe_option",
        "get_option", "set_eng_float_format", "show_versions", "test", "ExcelWriter",
        "ExcelFile", "HDFStore", "to_pickle",
    }),
    "sklearn": frozenset({"set_config", "config_context", "get_config", "show_versions"}),
    # RefResolver fetches remote schemas; the OS refuses the network, this refuses earlier.
    "jsonschema": frozenset({"RefResolver"}),
    # string.Formatter().get_field() reads attributes unguarded (CVE-2024-47532's target).
    "string": frozenset({"Formatter"}),
    # update_wrapper(dst, src, assigned=(name,)) reads and writes any attribute unguarded.
    "functools": frozenset({"update_wrapper", "wraps", "WRAPPER_ASSIGNMENTS"}),
    "json": frozenset({"load", "dump"}),
}
# Name prefixes a module does not export: every pandas reader opens files or URLs.
_MODULE_DENY_PREFIX: dict[str, tuple[str, ...]] = {"pandas": ("read_",)}

# Attribute names refused on every object. INSPECT_ATTRIBUTES are frame/code/generator
# internals (CVE-2023-37271); the rest write files, pickle, evaluate strings, touch global
# registries or reach raw memory.
DENIED_ATTRIBUTES = INSPECT_ATTRIBUTES | frozenset({
    "ctypes", "tofile", "dump", "to_pickle", "to_parquet", "to_feather", "to_hdf",
    "to_sql", "to_stata", "to_excel", "to_clipboard", "to_orc", "eval", "query", "style",
    "plot", "hist", "boxplot", "register", "cls_checks", "mro",
})

# Modules whose functions, classes and objects metric code may never hold. A value is
# refused when it, its class, or (for a builtin function) the module it is bound to
# belongs to one of these, by top-level package name.
_DENIED_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "genericpath", "sys", "subprocess",
    "_posixsubprocess", "socket", "_socket", "ssl", "_ssl", "select", "selectors",
    "asyncio", "ctypes", "_ctypes", "importlib", "_imp", "zipimport", "pkgutil", "runpy",
    "pickle", "_pickle", "copyreg", "marshal", "shelve", "dbm", "io", "_io", "shutil",
    "tempfile", "pathlib", "glob", "fnmatch", "linecache", "tokenize", "fcntl", "mmap",
    "signal", "_signal", "resource", "multiprocessing", "_multiprocessing", "threading",
    "_thread", "concurrent", "gc", "inspect", "code", "codeop", "pty", "tty", "termios",
    "pydoc", "webbrowser", "urllib", "http", "ftplib", "smtplib", "imaplib", "poplib",
    "xmlrpc", "sqlite3", "_sqlite3", "zipfile", "tarfile", "gzip", "bz2", "lzma",
    "platform", "sysconfig", "site", "faulthandler", "tracemalloc", "atexit", "weakref",
    "_weakref", "operator", "joblib", "cloudpickle", "threadpoolctl", "requests", "httpx",
    "urllib3", "apiary",
})

# Builtins and helpers that undo the guards: eval/exec/compile run unrestricted code,
# getattr/setattr/vars/dir skip the underscore rule, type()/super() reach class internals,
# attrgetter/methodcaller are getattr in disguise.
_DENIED_OBJECTS: tuple[object, ...] = (
    builtins.eval, builtins.exec, builtins.compile, builtins.open, builtins.__import__,
    builtins.breakpoint, builtins.input, builtins.globals, builtins.locals, builtins.vars,
    builtins.dir, builtins.getattr, builtins.setattr, builtins.delattr, builtins.type,
    builtins.super, builtins.memoryview, builtins.help, operator.attrgetter,
    operator.methodcaller, functools.update_wrapper, functools.wraps, object.__subclasses__,
    type.__subclasses__,
)
_DENIED_IDS = frozenset(id(obj) for obj in _DENIED_OBJECTS)

_FORBIDDEN_TYPES: tuple[type, ...] = (
    types.FrameType, types.CodeType, types.TracebackType, types.CellType,
)

# Types whose values need no further look: nothing dangerous hides in a str or an int.
# Containers are checked element by element when metric code takes elements out.
_PLAIN_TYPES = frozenset({
    str, int, float, bool, type(None), complex, bytes, list, dict, tuple, set, frozenset,
    range, slice,
})


def _top(module_name: object) -> str:
    return module_name.partition(".")[0] if isinstance(module_name, str) else ""


# Objects the sandbox itself hands to metric code (the guarded builtins); they live in
# ``apiary``, which is otherwise refused.
_PROVIDED_IDS: set[int] = set()


def provide(*objects: object) -> None:
    """Declare objects the sandbox hands to metric code, so check_value lets them pass."""
    _PROVIDED_IDS.update(id(obj) for obj in objects)


def _denied_reason(value: Any) -> str | None:
    """Why metric code may not hold ``value``, or None if it may."""
    if id(value) in _PROVIDED_IDS or isinstance(value, (SafeModule, PolicyViolation)):
        return None
    if id(value) in _DENIED_IDS:
        return f"{getattr(value, '__name__', 'this object')!s} is not available in metrics"
    if isinstance(value, _FORBIDDEN_TYPES):
        return f"{type(value).__name__} objects are not available in metrics"
    cls = type(value)
    if _top(cls.__module__) in _DENIED_MODULES:
        return f"objects of {cls.__module__}.{cls.__qualname__} are not available in metrics"
    if isinstance(value, types.BuiltinFunctionType):
        owner = value.__self__
        owner_name = owner.__name__ if isinstance(owner, types.ModuleType) else (
            type(owner).__module__)
        if _top(owner_name) in _DENIED_MODULES:
            return f"{owner_name}.{value.__name__} is not available in metrics"
    elif isinstance(value, (type, types.FunctionType, types.MethodType,
                            functools.partial)):
        module = getattr(value, "__module__", None)
        if _top(module) in _DENIED_MODULES:
            return f"{module}.{getattr(value, '__qualname__', '?')} is not available in metrics"
    return None


def check_value(value: Any) -> Any:
    """``value`` as metric code may hold it, or :class:`PolicyViolation`.

    Raw modules become their :class:`SafeModule` if allowed.
    """
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, types.ModuleType):
        return safe_module(value)
    reason = _denied_reason(value)
    if reason is not None:
        raise PolicyViolation(reason)
    return value


def checked_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``iterable``, passing every element through :func:`check_value`."""
    if type(iterable) in (range, str, bytes):
        # Their elements are ints and strs: skip the per-element check for speed.
        return iter(iterable)
    return _checked(iter(iterable))


def _checked(it: Iterator[Any]) -> Iterator[Any]:
    for item in it:
        yield check_value(item)


class SafeModule:
    """An allowed module as metric code sees it: public names only, minus the deny list,
    immutable, and with allowed submodules as nested ``SafeModule`` objects.

    Instances have no ``__name__`` (see the module docstring) and raise a fresh
    ``AttributeError`` for a missing name, so the exception carries no ``obj`` that
    would hand out the real module (CVE-2024-47532).
    """

    __slots__ = ("_sandbox_exports", "_sandbox_label")

    _sandbox_exports: dict[str, Any]
    _sandbox_label: str

    def __init__(self, label: str, exports: dict[str, Any]) -> None:
        object.__setattr__(self, "_sandbox_label", label)
        object.__setattr__(self, "_sandbox_exports", exports)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found normally, i.e. every exported name; dunder
        # lookups by the interpreter (``__name__``, ``__spec__``) fail here on purpose.
        try:
            return self._sandbox_exports[name]
        except KeyError:
            raise AttributeError(
                f"module {self._sandbox_label!r} has no attribute {name!r} available "
                "in metrics") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise PolicyViolation("modules are read-only in metrics")

    def __delattr__(self, name: str) -> None:
        raise PolicyViolation("modules are read-only in metrics")

    def __repr__(self) -> str:
        return f"<module {self._sandbox_label!r} (sandboxed)>"

    def __dir__(self) -> list[str]:
        return sorted(self._sandbox_exports)

    def sandbox_lookup(self, name: str) -> Any:
        """What metric code gets for ``module.name`` (used by the guarded getattr)."""
        return self.__getattr__(name)


_SAFE_MODULES: dict[str, SafeModule] = {}


def safe_module(module: types.ModuleType) -> SafeModule:
    """The :class:`SafeModule` for an allowed module, or :class:`PolicyViolation`."""
    name = module.__name__
    cached = _SAFE_MODULES.get(name)
    if cached is not None:
        return cached
    if name not in ALLOWED_IMPORTS:
        raise PolicyViolation(f"module {name!r} is not available in metrics")
    exports: dict[str, Any] = {}
    deny = _MODULE_DENY.get(name, frozenset())
    deny_prefix = _MODULE_DENY_PREFIX.get(name, ())
    # Only what is already in the module's namespace: names resolved lazily by a module
    # __getattr__ (numpy.testing, numpy.f2py) are never imported on metric code's behalf.
    for attr, value in list(vars(module).items()):
        if attr.startswith("_") or attr in deny or attr.startswith(deny_prefix):
            continue
        if isinstance(value, types.ModuleType):
            if value.__name__ in ALLOWED_IMPORTS and value.__name__ == f"{name}.{attr}":
                exports[attr] = safe_module(value)
            continue
        if _denied_reason(value) is None:
            exports[attr] = value
    # An allowed submodule that the package does not bind eagerly still belongs to it.
    for sub in ALLOWED_IMPORTS:
        parent, _, leaf = sub.rpartition(".")
        if parent == name and leaf not in exports:
            exports[leaf] = safe_module(importlib.import_module(sub))
    proxy = SafeModule(name, exports)
    _SAFE_MODULES[name] = proxy
    return proxy


def import_allowed(name: str) -> SafeModule:
    """Import an allowed module (normally already loaded) and return its proxy."""
    if name not in ALLOWED_IMPORTS:
        raise PolicyViolation(f"import of {name!r} is not allowed in metrics")
    return safe_module(importlib.import_module(name))


def preload() -> None:
    """Import every allowed module and build its proxy (the zygote, once)."""
    for name in PRELOAD:
        module = importlib.import_module(name)
        if name in ALLOWED_IMPORTS:
            safe_module(module)
