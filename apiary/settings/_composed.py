"""The settings of a whole Apiary (both planes) and the loader that explains bad values."""

from __future__ import annotations

from pydantic import ValidationError

from apiary.errors import ConfigurationError
from apiary.settings._control import ControlPlaneSettings
from apiary.settings._data import DataPlaneSettings


class ApiarySettings(ControlPlaneSettings, DataPlaneSettings):
    """Everything Apiary can be told: the control plane's settings, the data plane's, and
    those both read (each field once). Immutable once loaded; picklable for Ray."""


def load_settings(**overrides: object) -> ApiarySettings:
    """Read settings from the environment (and ``overrides``), or explain what to fix.

    Raises :class:`ConfigurationError` naming each bad field, its environment variable and
    the constraint it broke (a URL setting's message also says what unsetting it does).
    """
    try:
        return ApiarySettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"APIARY_{field.upper()}"
            problems.append(f"{field} (env {env}): {err['msg']}")
        raise ConfigurationError(
            "invalid Apiary configuration: " + "; ".join(problems)
            + " (`python -m apiary.settings` describes every setting)"
        ) from None
