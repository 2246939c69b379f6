"""The federation stream's generated code, for both planes (docs/architecture.md, "Federation").

``proto/apiary/federation/v1/federation.proto`` is compiled at build time
(``scripts/build_proto.py``; ``make proto``, ``make``'s install step and wheel builds run it)
into ``apiary/_generated/``, which is never committed. Every other module imports the
messages and the service stubs from here, never from ``apiary._generated``: a checkout
without the generated code then fails with one :class:`~apiary.errors.ConfigurationError`
that says how to fix it, instead of an ImportError deep in a plane.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from apiary.errors import ConfigurationError

#: The fully qualified method name of the one RPC (``Federation/Connect``).
CONNECT_METHOD = "/apiary.federation.v1.Federation/Connect"
SERVICE_NAME = "apiary.federation.v1.Federation"


def _load() -> tuple[ModuleType, ModuleType]:
    try:
        from apiary._generated.federation.v1 import (
            federation_pb2,
            federation_pb2_grpc,
        )
    except ImportError as exc:
        raise ConfigurationError(
            "the federation stream's generated code is missing (apiary/_generated); "
            "run `make proto` (or `python scripts/build_proto.py`)", missing=str(exc)) from exc
    return federation_pb2, federation_pb2_grpc


def pb2() -> Any:
    """The generated messages module (``federation_pb2``); raises ConfigurationError when
    the code was not generated."""
    return _load()[0]


def pb2_grpc() -> Any:
    """The generated service module (``federation_pb2_grpc``: ``FederationStub``,
    ``FederationServicer``, ``add_FederationServicer_to_server``)."""
    return _load()[1]


def __getattr__(name: str) -> Any:
    # ``from apiary.federation_wire import federation_pb2`` works as the contract says.
    if name == "federation_pb2":
        return pb2()
    if name == "federation_pb2_grpc":
        return pb2_grpc()
    raise AttributeError(name)
