"""Which :class:`~apiary.store.EventStore` methods a :class:`~apiary.store.StoreClient`
reaches: declared once, on the method, with :func:`remote`.

:func:`remote` only marks the method (it is returned unchanged, so calling the store in
process is unaffected); :func:`remote_methods` lists the marked methods of a class. From
that one list come both what the store's owner accepts (:func:`call_remote`, used by the
chDB owner actor and by the in-process client) and the typed async methods of
:class:`~apiary.store.StoreClient`, which :mod:`apiary.store._codegen` generates into
:mod:`apiary.store._client_methods` (a test fails when that file is stale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_MARK = "__apiary_remote__"

Method = TypeVar("Method", bound=Callable[..., Any])


def remote(method: Method) -> Method:
    """Make ``method`` reachable through a store client (see the module docstring)."""
    setattr(method, _MARK, True)
    return method


def remote_methods(cls: type) -> tuple[str, ...]:
    """The names of ``cls``'s methods marked with :func:`remote`, in definition order."""
    return tuple(name for name, value in vars(cls).items() if getattr(value, _MARK, False))


def call_remote(store: Any, method: str, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    """``store.<method>(*args, **kwargs)`` if ``method`` is marked :func:`remote` on
    ``store``'s class; anything else is refused with :class:`AttributeError` (a caller
    never reaches ``close``, ``migrate`` or the driver)."""
    if not getattr(getattr(type(store), method, None), _MARK, False):
        raise AttributeError(f"{type(store).__name__} has no remote method {method!r}")
    return getattr(store, method)(*args, **kwargs)


__all__ = ["call_remote", "remote", "remote_methods"]
