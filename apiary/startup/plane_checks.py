"""What a plane's Ray cluster must (and must not) be configured with, checked before it starts.

A deployment is two Ray clusters, one per plane (:mod:`apiary.startup.cluster`), because the
planes share no credentials: every member of a Ray cluster can run code on every other
member, and Serve keeps each application's arguments (Apiary's settings, secrets included) in
the head's GCS, so a secret given to any node of a cluster is readable from all of them.

:func:`cluster_problems` lists everything that keeps a configuration from running one plane:
a required store or key unset (:data:`REQUIRED`: a cluster has no embedded stores and no
generated key files), a value still holding a template's :data:`PLACEHOLDER`, a secret of the
*other* plane present (:data:`PLANE_SECRETS`), a database that is not PostgreSQL, fewer than
3 JetStream replicas, a data plane trusting another issuer than the control plane signs as,
and an envelope key that does not open. :func:`cluster_settings` is what every cluster
builder starts with: the settings of this process's environment, or a
:class:`~apiary.errors.ConfigurationError` naming every problem.
"""

from __future__ import annotations

from typing import Literal, get_args

from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings, cluster_required, load_settings, plane_secrets

#: The two planes, each deployed as a Ray cluster of its own.
Plane = Literal["data", "control"]
PLANES: tuple[Plane, ...] = get_args(Plane)
#: Marker of a value that a deployment template leaves for the operator to fill in.
PLACEHOLDER = "CHANGE-ME"

#: Settings holding a plane's secrets (credentials in URLs, keys). A node of the other plane
#: must not have them: its cluster refuses to start when it does. Read from the plane's
#: settings model (:func:`apiary.settings.plane_secrets`).
PLANE_SECRETS: dict[Plane, tuple[str, ...]] = {plane: plane_secrets(plane) for plane in PLANES}
#: Settings each plane's cluster must have (no embedded store, no generated key file), read
#: from the plane's settings model (:func:`apiary.settings.cluster_required`).
REQUIRED: dict[Plane, tuple[str, ...]] = {plane: cluster_required(plane) for plane in PLANES}


def _env(field: str) -> str:
    return f"APIARY_{field.upper()}"


def _value(settings: ApiarySettings, field: str) -> str | None:
    value = getattr(settings, field)
    if value is None:
        return None
    if hasattr(value, "get_secret_value"):
        return str(value.get_secret_value())
    return ",".join(value) if isinstance(value, tuple) else str(value)


def cluster_problems(settings: ApiarySettings, plane: Plane) -> list[str]:
    """What keeps ``settings`` from running ``plane`` on a cluster (empty if nothing).

    Refused: a required setting unset (:data:`REQUIRED`), any ``APIARY_*`` value still
    holding the template placeholder, a secret of the other plane present
    (:data:`PLANE_SECRETS`), a database that is not PostgreSQL, fewer than 3 JetStream
    replicas, a data plane trusting another issuer than the control plane signs as, and an
    envelope key that is not 32 bytes.
    """
    problems: list[str] = []
    for field in REQUIRED[plane]:
        if not _value(settings, field):
            problems.append(f"{_env(field)} is unset: a cluster has no embedded stores or keys")
    for field in ApiarySettings.model_fields:
        value = _value(settings, field)
        if value and PLACEHOLDER in value:
            problems.append(
                f"{_env(field)} still holds the template placeholder {PLACEHOLDER!r}")
    other: Plane = "data" if plane == "control" else "control"
    for field in PLANE_SECRETS[other]:
        if _value(settings, field):
            problems.append(
                f"{_env(field)} is set, but it is a secret of the {other} plane: a {plane}-plane "
                f"node must not hold it (give it only to the {other} plane's cluster)")
    database = "cp_database_url" if plane == "control" else "dp_database_url"
    url = _value(settings, database)
    if url and not url.startswith("postgresql"):
        problems.append(f"{_env(database)} must name PostgreSQL: every replica shares it")
    if plane == "data":
        if settings.nats_replicas < 3:
            problems.append(
                "APIARY_NATS_REPLICAS must be 3 (or 5): streams must survive a node")
        if settings.cp_issuer and settings.trusted_issuer != settings.cp_issuer_url:
            problems.append(
                f"the data plane trusts tokens of {settings.trusted_issuer!r} but the control "
                f"plane signs as {settings.cp_issuer_url!r}: set APIARY_JWT_ISSUER to "
                "APIARY_CP_ISSUER")
    key_field = "cp_envelope_key" if plane == "control" else "dp_envelope_key"
    key = _value(settings, key_field)
    if key and PLACEHOLDER not in key:
        try:
            _check_envelope(settings, plane)
        except ConfigurationError as exc:
            problems.append(exc.message)
    return problems


def _check_envelope(settings: ApiarySettings, plane: Plane) -> None:
    """Open the plane's envelope as its services will (a bad key raises)."""
    if plane == "control":
        from apiary.control.envelope import envelope_from_settings as cp_envelope

        cp_envelope(settings)
    else:
        from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings as dp_envelope

        dp_envelope(settings)


def cluster_settings(plane: Plane) -> ApiarySettings:
    """Settings from this process's environment, checked for ``plane`` on a cluster.

    Raises :class:`ConfigurationError` listing every problem.
    """
    settings = load_settings()
    problems = cluster_problems(settings, plane)
    if problems:
        raise ConfigurationError(
            f"not a {plane}-plane cluster configuration: " + "; ".join(problems))
    return settings
