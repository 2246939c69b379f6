"""Which plane each setting belongs to, and what a plane's cluster needs and must not hold.

A setting belongs to the model that declares it: :class:`ControlPlaneSettings`,
:class:`DataPlaneSettings`, or :class:`CommonSettings` (both planes). The cluster checks
(:mod:`apiary.deployments.serve_app`) read their lists from here, so that declaring a
setting with :func:`~apiary.settings._fields.on_cluster` marks is all it takes.
"""

from __future__ import annotations

from typing import Literal

from pydantic.fields import FieldInfo

from apiary.settings._common import CommonSettings
from apiary.settings._control import ControlPlaneSettings
from apiary.settings._data import DataPlaneSettings

#: A plane, deployed as a Ray cluster of its own.
Plane = Literal["control", "data"]
#: Where a setting belongs: one plane, or both (``"common"``).
Owner = Literal["common", "control", "data"]

PLANE_MODELS: dict[Plane, type[CommonSettings]] = {
    "control": ControlPlaneSettings,
    "data": DataPlaneSettings,
}


def owner_of(field: str) -> Owner:
    """The plane whose model declares ``field``, or ``"common"``; :class:`KeyError` if no
    model does."""
    if field in CommonSettings.model_fields:
        return "common"
    for plane, model in PLANE_MODELS.items():
        if field in model.model_fields:
            return plane
    raise KeyError(field)


def _marked(field: FieldInfo, mark: str) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get(mark) is True


def plane_secrets(plane: Plane) -> tuple[str, ...]:
    """Settings holding ``plane``'s secrets (credentials, keys, URLs that may hold a
    password): a node of the other plane must not have them."""
    return tuple(name for name, field in PLANE_MODELS[plane].model_fields.items()
                 if _marked(field, "secret"))


def cluster_required(plane: Plane) -> tuple[str, ...]:
    """Settings ``plane``'s cluster must have: no embedded store, no generated key file."""
    return tuple(name for name, field in PLANE_MODELS[plane].model_fields.items()
                 if _marked(field, "cluster_required"))
