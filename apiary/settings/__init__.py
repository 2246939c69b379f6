"""Apiary's configuration: typed settings, read from the environment, one model per plane.

Every field reads the environment variable ``APIARY_<FIELD NAME>`` (for example
``APIARY_PORT``). The settings are split by the plane that reads them
(docs/architecture.md): :class:`ControlPlaneSettings` (``cp_*``, SMTP),
:class:`DataPlaneSettings` (stores, ingestion, writers, evaluation, review), both built on
:class:`CommonSettings` (data dir, Ray, HTTP, outbound calls, Redis, logs);
:class:`ApiarySettings` is all of them, as one flat object. Leaving a store's URL unset
selects its embedded default (docs/architecture.md): a nats-server that Apiary starts
itself, chDB in the data directory.

:func:`load_settings` validates everything at start-up and turns a bad value into a
:class:`~apiary.errors.ConfigurationError` that says how to fix it. Help text is generated
from each field (:func:`field_help`: description, default, variable); ``python -m
apiary.settings`` prints it all, and ``docs/configuration.md`` is its Markdown form.
:func:`plane_secrets` and :func:`cluster_required` tell a plane's cluster which settings
it must not hold and which it needs.
"""

from apiary.settings._common import CommonSettings
from apiary.settings._composed import ApiarySettings, load_settings
from apiary.settings._control import ControlPlaneSettings
from apiary.settings._data import DataPlaneSettings
from apiary.settings._fields import MiB
from apiary.settings._help import default_text, env_var, field_help, flag_help, settings_reference
from apiary.settings._planes import Owner, Plane, cluster_required, owner_of, plane_secrets
from apiary.settings._urls import URL_RULES, UrlRule

__all__ = [
    "URL_RULES",
    "ApiarySettings",
    "CommonSettings",
    "ControlPlaneSettings",
    "DataPlaneSettings",
    "MiB",
    "Owner",
    "Plane",
    "UrlRule",
    "cluster_required",
    "default_text",
    "env_var",
    "field_help",
    "flag_help",
    "load_settings",
    "owner_of",
    "plane_secrets",
    "settings_reference",
]
