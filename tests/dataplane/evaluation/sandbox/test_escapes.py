"""The escape corpus: every attempt gets a clean SandboxError and the pool stays healthy.

Payloads follow the published RestrictedPython advisories (named in each docstring) and
the usual ways out of a Python sandbox: formatting, exception objects, frames, getattr in
disguise, builtins, the allowed libraries, and resource bombs. Each test asserts the
specific error, then that the next normal metric on the same pool is scored.
"""

from __future__ import annotations

import pytest
from _sandbox_baseline import EVENT, assert_healthy

from apiary.dataplane.evaluation.sandbox import SandboxPool
from apiary.errors import (
    SandboxCompileError,
    SandboxError,
    SandboxResourceLimit,
    SandboxRuntimeError,
    SandboxTimeout,
)


async def blocked(pool: SandboxPool, code: str, error: type[SandboxError], *fragments: str
                  ) -> SandboxError:
    with pytest.raises(error) as info:
        await pool.run(code, EVENT)
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, text
    await assert_healthy(pool)
    return info.value


def fn(*body: str, imports: str = "") -> str:
    """A metric whose evaluate() runs ``body``."""
    return imports + "def evaluate(event):\n" + "".join(f"    {line}\n" for line in body)


# --- format strings -------------------------------------------------------------------

async def test_str_format_attribute_walk(pool: SandboxPool) -> None:
    """CVE-2023-41039 (GHSA-xjw2-6jm9-rf67): str.format reads attributes of its arguments
    without the guards: "{0.__class__.__base__.__subclasses__}".format(x)."""
    await blocked(pool, fn('return "{0.__class__.__base__.__subclasses__}".format(event)'),
                  SandboxRuntimeError, "PolicyViolation", "str.format")


async def test_str_format_map(pool: SandboxPool) -> None:
    """CVE-2023-41039, format_map variant: "{x.__class__}".format_map({"x": obj})."""
    await blocked(pool, fn('return "{x.__class__}".format_map({"x": event})'),
                  SandboxRuntimeError, "str.format")


async def test_str_format_through_getattr_on_the_type(pool: SandboxPool) -> None:
    """CVE-2023-41039, unbound variant: getattr(str, "format")("{0.__class__}", obj)."""
    await blocked(pool, fn('f = getattr(str, "format")', 'return f("{0.__class__}", event)'),
                  SandboxRuntimeError, "str.format")


async def test_fstring_attribute_is_rejected_at_compile_time(pool: SandboxPool) -> None:
    """CVE-2023-41039's intent through an f-string: f"{event.__class__}". f-string fields
    are ordinary expressions, so the underscore rule rejects it before it runs."""
    await blocked(pool, fn('return f"{event.__class__.__mro__}"'), SandboxCompileError,
                  "__class__")


async def test_string_formatter_get_field(pool: SandboxPool) -> None:
    """CVE-2024-47532's target: string.Formatter().get_field("0.__class__", ...) walks
    attributes unguarded; Formatter is not exported by the sandboxed string module."""
    await blocked(pool, fn('return string.Formatter().get_field("0.__class__", [1], {})',
                           imports="import string\n"), SandboxRuntimeError, "Formatter")
    await blocked(pool, "from string import Formatter\n" + fn("return 1"),
                  SandboxRuntimeError, "ImportError", "Formatter")


# --- exception objects ----------------------------------------------------------------

async def test_attributeerror_obj_leaks_the_module(pool: SandboxPool) -> None:
    """CVE-2024-47532 (GHSA-5rfv-66g4-jr8h): the AttributeError raised by string.foo
    carried .obj = the unrestricted module, whose Formatter then escapes."""
    code = fn("try:", "    string.foo", "except AttributeError as e:",
              '    return e.obj.Formatter().get_field("0.__class__", [1], {})',
              imports="import string\n")
    await blocked(pool, code, SandboxRuntimeError, "PolicyViolation", "'obj'")


async def test_attributeerror_obj_from_library_code(pool: SandboxPool) -> None:
    """CVE-2023-37271 / CVE-2024-47532 style: an AttributeError raised inside a library
    carries .obj; reading it through getattr() is refused as well."""
    code = fn("try:", "    pd.DataFrame().no_such_column", "except AttributeError as e:",
              '    return str(getattr(e, "obj"))', imports="import pandas as pd\n")
    await blocked(pool, code, SandboxRuntimeError, "'obj'")


# --- try/except* ----------------------------------------------------------------------

async def test_try_except_star(pool: SandboxPool) -> None:
    """CVE-2025-22153 (GHSA-gmj9-h825-chq2): try/except* triggers a type confusion in
    CPython 3.11-3.13 that bypasses RestrictedPython; the construct is refused."""
    code = fn("try:", '    raise ExceptionGroup("x", [AttributeError("a")])',
              "except* AttributeError as group:", "    return str(group.exceptions)")
    await blocked(pool, code, SandboxCompileError, "TryStar")


# --- frames ---------------------------------------------------------------------------

async def test_generator_frame_walk(pool: SandboxPool) -> None:
    """CVE-2023-37271 (GHSA-wqc8-x2pr-7jqh): a generator's gi_frame.f_back leads to the
    caller's frame and its unrestricted globals and builtins."""
    code = fn("g = (x for x in [1])", 'return g.gi_frame.f_back.f_back.f_globals["__builtins__"]')
    await blocked(pool, code, SandboxCompileError, "gi_frame")


async def test_generator_frame_walk_through_getattr(pool: SandboxPool) -> None:
    """CVE-2023-37271, runtime variant: getattr(gen, "gi_frame") and "gi_code" are
    refused by the guarded getattr, not only by the compiler."""
    await blocked(pool, fn("g = (x for x in [1])", 'return str(getattr(g, "gi_frame"))'),
                  SandboxRuntimeError, "gi_frame")
    await blocked(pool, fn("g = (x for x in [1])", 'return str(getattr(g, "gi_code"))'),
                  SandboxRuntimeError, "gi_code")


async def test_traceback_frame_walk(pool: SandboxPool) -> None:
    """CVE-2023-37271 family: exception tracebacks (tb_frame) reach frames too."""
    code = fn("try:", "    1 / 0", "except Exception as e:",
              '    return str(getattr(getattr(e, "__traceback__"), "tb_frame"))')
    await blocked(pool, code, SandboxRuntimeError, "__traceback__")


# --- getattr in disguise --------------------------------------------------------------

async def test_operator_attrgetter_is_not_importable(pool: SandboxPool) -> None:
    """RestrictedPython advisories on operator.attrgetter (unguarded getattr by string):
    the operator module is not on the allowlist."""
    await blocked(pool, "import operator\n" + fn('return operator.attrgetter("__class__")(1)'),
                  SandboxCompileError, "'operator' is not allowed")


async def test_getattr_through_functools(pool: SandboxPool) -> None:
    """getattr reached through allowed modules: functools.reduce(getattr, ...) and
    functools.partial(getattr, ...) get the guarded getattr, which refuses dunders."""
    await blocked(pool, fn('return str(functools.reduce(getattr, ["__class__"], event))',
                           imports="import functools\n"), SandboxRuntimeError, "__class__")
    await blocked(pool, fn('return str(functools.partial(getattr, event)("__globals__"))',
                           imports="import functools\n"), SandboxRuntimeError, "__globals__")


async def test_update_wrapper_and_pandas_name_dispatch(pool: SandboxPool) -> None:
    """getattr in disguise inside libraries: functools.update_wrapper copies any attribute
    unguarded, and pandas agg/apply resolve a string name with a raw getattr
    (df.agg("__dict__")). Neither is reachable."""
    await blocked(pool, fn("return str(functools.update_wrapper)",
                           imports="import functools\n"), SandboxRuntimeError,
                  "update_wrapper")
    await blocked(pool, fn('return str(pd.DataFrame({"a": [1]}).agg("__dict__"))',
                           imports="import pandas as pd\n"), SandboxRuntimeError,
                  "PolicyViolation", "__dict__")
    await blocked(pool, fn('df = pd.DataFrame({"a": [1]})',
                           'return str(pd.DataFrame.agg(df, "__dict__"))',
                           imports="import pandas as pd\n"), SandboxRuntimeError, "__dict__")
    await blocked(pool, fn('return str(pd.Series([1]).apply("__class__"))',
                           imports="import pandas as pd\n"), SandboxRuntimeError, "__class__")


async def test_module_attributes_leading_to_sys(pool: SandboxPool) -> None:
    """Allowed modules import dangerous ones (statistics.sys, re.enum, json.codecs):
    a sandboxed module exports no module that is not itself allowed."""
    for expr in ("statistics.sys", "re.copyreg", "json.codecs", "datetime.sys"):
        module = expr.split(".")[0]
        await blocked(pool, fn(f"return str({expr})", imports=f"import {module}\n"),
                      SandboxRuntimeError, "AttributeError")


# --- builtins and type tricks ---------------------------------------------------------

async def test_builtins_and_import_names(pool: SandboxPool) -> None:
    """__builtins__ / __import__: names starting with "_" are refused at compile time."""
    await blocked(pool, fn('return __builtins__["__import__"]("os")'), SandboxCompileError,
                  "__builtins__")
    await blocked(pool, fn('return __import__("os").system("id")'), SandboxCompileError,
                  "__import__")


async def test_subclasses_walk(pool: SandboxPool) -> None:
    """().__class__.__base__.__subclasses__() — the classic walk to os._wrap_close."""
    await blocked(pool, fn("return ().__class__.__base__.__subclasses__()"),
                  SandboxCompileError, "__class__")
    await blocked(pool, fn('return str(getattr(object, "__subclasses__")())'),
                  SandboxRuntimeError, "__subclasses__")


async def test_type_is_not_available(pool: SandboxPool) -> None:
    """type(x) and type("X", bases, ns) reach class internals: type is not a builtin."""
    await blocked(pool, fn("return str(type(event).mro())"), SandboxRuntimeError,
                  "NameError", "type")
    await blocked(pool, fn('return str(type("X", (object,), {}))'), SandboxRuntimeError,
                  "NameError")


async def test_dangerous_builtins_are_absent(pool: SandboxPool) -> None:
    """eval, exec, compile, vars, globals, dir, open: absent or refused."""
    await blocked(pool, fn('return eval("1")'), SandboxCompileError, "Eval calls")
    await blocked(pool, fn("breakpoint()"), SandboxCompileError, "reserved name")
    for name in ("vars", "globals", "dir", "compile", "input", "help", "memoryview"):
        await blocked(pool, fn(f"return str({name})"), SandboxRuntimeError, "NameError")


async def test_writing_into_modules(pool: SandboxPool) -> None:
    """Monkey-patching a shared module would reach the next evaluation: refused."""
    await blocked(pool, fn("math.pi = 3", "return 1", imports="import math\n"),
                  SandboxRuntimeError, "PolicyViolation")
    await blocked(pool, fn('setattr(math, "pi", 3)', "return 1", imports="import math\n"),
                  SandboxRuntimeError, "PolicyViolation")


async def test_global_registries(pool: SandboxPool) -> None:
    """ABC registration changes isinstance() for every later evaluation: refused."""
    code = fn("class X:", "    pass", "collections.abc.Sequence.register(X)", "return 1",
              imports="import collections.abc\n")
    await blocked(pool, code, SandboxRuntimeError, "register")


# --- the OS through the front door ----------------------------------------------------

async def test_file_read_and_write(pool: SandboxPool) -> None:
    """open('/etc/passwd') and open(path, 'w'): open is not a builtin (the OS layer's
    Landlock refusal is tested in test_oslimits)."""
    await blocked(pool, fn('return open("/etc/passwd").read()'), SandboxRuntimeError,
                  "NameError", "open")
    await blocked(pool, fn('open("/tmp/pwned", "w").write("x")', "return 1"),
                  SandboxRuntimeError, "NameError")


async def test_fork_and_processes(pool: SandboxPool) -> None:
    """os.fork, subprocess and multiprocessing cannot be imported (fork bomb)."""
    for module in ("os", "subprocess", "multiprocessing", "socket", "ctypes", "sys",
                   "importlib", "pickle"):
        await blocked(pool, f"import {module}\n" + fn("return 1"), SandboxCompileError,
                      f"'{module}' is not allowed")


async def test_network_from_metric_code(pool: SandboxPool) -> None:
    """Network: no socket module, and jsonschema's remote $ref is not fetched."""
    await blocked(pool, "import socket\n" + fn('socket.create_connection(("127.0.0.1", 22))'),
                  SandboxCompileError, "'socket' is not allowed")
    code = fn('jsonschema.validate({"a": 1}, {"$ref": "http://127.0.0.1:9/x.json"})',
              "return 1", imports="import jsonschema\n")
    await blocked(pool, code, SandboxRuntimeError, "Unresolvable")


# --- numpy, pandas, scikit-learn ------------------------------------------------------

async def test_numpy_routes_to_os(pool: SandboxPool) -> None:
    """numpy.lib (np.lib.npyio reaches os), np.ctypeslib, import numpy.lib."""
    imp = "import numpy as np\n"
    await blocked(pool, fn("return str(np.lib.npyio.os)", imports=imp), SandboxRuntimeError,
                  "no attribute 'lib'")
    await blocked(pool, fn("return str(np.ctypeslib)", imports=imp), SandboxRuntimeError,
                  "ctypeslib")
    await blocked(pool, "from numpy import lib\n" + fn("return 1"), SandboxRuntimeError,
                  "ImportError")
    await blocked(pool, "import numpy.lib\n" + fn("return 1"), SandboxCompileError,
                  "'numpy.lib' is not allowed")


async def test_numpy_load_with_pickle(pool: SandboxPool) -> None:
    """np.load(..., allow_pickle=True) unpickles arbitrary code: np.load is absent."""
    code = fn('return str(np.load("/tmp/x.npy", allow_pickle=True))',
              imports="import numpy as np\n")
    await blocked(pool, code, SandboxRuntimeError, "no attribute 'load'")


async def test_numpy_raw_memory_and_files(pool: SandboxPool) -> None:
    """ndarray.ctypes (raw pointers), ndarray.tofile and np.fromfile (files)."""
    imp = "import numpy as np\n"
    await blocked(pool, fn("return str(np.arange(3).ctypes.data)", imports=imp),
                  SandboxRuntimeError, "'ctypes'")
    await blocked(pool, fn('np.arange(3).tofile("/tmp/x")', "return 1", imports=imp),
                  SandboxRuntimeError, "'tofile'")
    await blocked(pool, fn('return str(np.fromfile("/etc/passwd"))', imports=imp),
                  SandboxRuntimeError, "fromfile")


async def test_pandas_file_io(pool: SandboxPool) -> None:
    """pd.read_csv of a local file, pd.read_pickle, df.to_csv(path), df.to_pickle."""
    imp = "import pandas as pd\n"
    await blocked(pool, fn('return str(pd.read_csv("/etc/passwd"))', imports=imp),
                  SandboxRuntimeError, "read_csv")
    await blocked(pool, fn('return str(pd.read_pickle("/tmp/x.pkl"))', imports=imp),
                  SandboxRuntimeError, "read_pickle")
    await blocked(pool, fn('pd.DataFrame({"a": [1]}).to_csv("/tmp/x.csv")', "return 1",
                           imports=imp), SandboxRuntimeError, "PolicyViolation")
    await blocked(pool, fn('pd.DataFrame({"a": [1]}).to_pickle("/tmp/x.pkl")', "return 1",
                           imports=imp), SandboxRuntimeError, "to_pickle")


async def test_pandas_eval_and_query(pool: SandboxPool) -> None:
    """pandas eval/query evaluate strings with access to the caller's frame."""
    imp = "import pandas as pd\n"
    await blocked(pool, fn('return str(pd.eval("1+1"))', imports=imp), SandboxRuntimeError,
                  "eval")
    await blocked(pool, fn('return str(pd.DataFrame({"a": [1]}).query("a > 0"))', imports=imp),
                  SandboxRuntimeError, "'query'")


async def test_sklearn_datasets_and_config(pool: SandboxPool) -> None:
    """sklearn.datasets downloads and reads files; sklearn.set_config is process state."""
    await blocked(pool, "import sklearn.datasets\n" + fn("return 1"), SandboxCompileError,
                  "'sklearn.datasets' is not allowed")
    await blocked(pool, fn("sklearn.set_config(assume_finite=True)", "return 1",
                           imports="import sklearn\n"), SandboxRuntimeError, "set_config")


# --- resources ------------------------------------------------------------------------

async def test_busy_loop_hits_the_cpu_limit(pool: SandboxPool) -> None:
    """while True: pass — RLIMIT_CPU: the kernel ends the worker with SIGXCPU."""
    error = await blocked(pool, fn("while True:", "    pass"), SandboxResourceLimit, "CPU")
    assert error.context["limit"] == "cpu"


async def test_busy_loop_in_c_hits_the_cpu_limit(pool: SandboxPool) -> None:
    """A loop inside C code never returns to the interpreter; the kernel limit still acts."""
    await blocked(pool, fn("return len(str(7 ** 10 ** 8))"), SandboxResourceLimit, "CPU")


async def test_wall_clock_timeout(timeout_pool: SandboxPool) -> None:
    """The parent kills a worker past timeout_s (here below the CPU limit) and replaces it."""
    error = await blocked(timeout_pool, fn("while True:", "    pass"), SandboxTimeout)
    assert error.context["limit"] == 1.5


async def test_memory_bomb_string(pool: SandboxPool) -> None:
    """"a" * 10**10 — RLIMIT_AS makes the allocation fail."""
    error = await blocked(pool, fn('return "a" * 10 ** 10'), SandboxResourceLimit, "memory")
    assert error.context["limit"] == "memory"


async def test_memory_bomb_list_growth(pool: SandboxPool) -> None:
    """A list grown until memory runs out."""
    await blocked(pool, fn("x = []", "while True:", '    x.append("a" * 10 ** 6 + str(len(x)))'),
                  SandboxResourceLimit, "memory")


async def test_memory_bomb_numpy(pool: SandboxPool) -> None:
    """np.zeros(10**11) asks for 800 GB."""
    await blocked(pool, fn("return float(np.zeros(10 ** 11).sum())",
                           imports="import numpy as np\n"), SandboxResourceLimit, "memory")


async def test_huge_output(pool: SandboxPool) -> None:
    """A 1 MB score or explanation is refused (limit 16 KiB); printing is truncated."""
    await blocked(pool, fn('return "a" * 10 ** 6'), SandboxResourceLimit, "limit")
    await blocked(pool, fn('return {"score": 1, "explanation": "x" * 10 ** 6}'),
                  SandboxResourceLimit, "output")
    result = await pool.run(fn('print("a" * 10 ** 6)', "return 1"), EVENT)
    assert result.score == 1
    assert len(result.logs) < 9000
    assert result.logs.endswith("[output truncated]")


async def test_infinite_recursion(pool: SandboxPool) -> None:
    """Unbounded recursion ends in RecursionError, not a crashed worker."""
    code = "def f(n):\n    return f(n + 1)\n" + fn("return f(0)")
    await blocked(pool, code, SandboxRuntimeError, "RecursionError")


async def test_deeply_nested_data(pool: SandboxPool) -> None:
    """repr() of a 200 000-deep list recurses in C; CPython's guard raises RecursionError."""
    await blocked(pool, fn("x = []", "for i in range(200000):", "    x = [x]", "return str(x)"),
                  SandboxRuntimeError, "RecursionError")


async def test_deeply_nested_source(pool: SandboxPool) -> None:
    """Deeply nested source stops in the compiler, in the parent as in the worker."""
    await blocked(pool, fn("return " + "-" * 6000 + "1"), SandboxCompileError, "nested")
    await blocked(pool, fn("return " + "[" * 300 + "]" * 300), SandboxCompileError)


async def test_code_above_the_size_limit(pool: SandboxPool) -> None:
    """The size limit is checked before parsing (8 KiB in these tests)."""
    error = await blocked(pool, fn("return 1") + "#" * 9000, SandboxCompileError, "limit")
    assert error.context["limit"] == 8 * 1024


async def test_many_escapes_in_a_row_leave_the_pool_whole(pool: SandboxPool) -> None:
    """After a burst of killed workers the pool is back to its size and serves jobs."""
    for _ in range(3):
        with pytest.raises(SandboxResourceLimit):
            await pool.run(fn('return "a" * 10 ** 10'), EVENT)
    await assert_healthy(pool)
    await pool.wait_full()
    assert pool.stats.workers_started - pool.stats.workers_lost == pool.size
