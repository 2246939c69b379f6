"""Provider credentials of a workspace in dpdb: create, list, rotate, delete, and reveal.

Guarantees:

- Every operation is scoped to one workspace (:class:`Workspace`): a credential of another
  workspace or organization is "not found", never read, changed or used.
- The key is sealed before it reaches the session
  (:mod:`apiary.dataplane.evaluation.proxy.envelope`) and comes back in the clear only from
  :func:`reveal`, which the proxy calls right before handing it to LiteLLM. Nothing returned for
  display (:func:`describe`) holds more than
  :func:`key_hint`.
- A workspace has at most one credential per provider (409 on a second one), so the proxy
  never has to choose between keys.
- ``api_base`` is a URL the outbound-URL policy accepts (:mod:`apiary.outbound`: public
  https, or a host the operator allow-listed), and it cannot change without the key being
  sent again: whoever may redirect the key to another endpoint must already know it, so a
  changed endpoint never receives a key its author could not read.

Errors are :mod:`apiary.errors` (400 bad input or refused ``api_base``, 404 unknown id, 409
duplicate provider).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from apiary.dataplane.db import utcnow
from apiary.dataplane.db.models_proxy import ProviderCredential
from apiary.dataplane.evaluation.proxy.envelope import Envelope, Sealed
from apiary.errors import Conflict, InvalidRequest, NotFound
from apiary.outbound import OutboundPolicy

MAX_KEY_CHARS = 8192
#: Keys shorter than this show no hint at all: four characters of a short key is too much.
HINT_MIN_CHARS = 20
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
# A key travels in an HTTP header: no whitespace or control characters, ever.
_KEY = re.compile(r"^[\x21-\x7e]+$")
#: The policy when none is given: public https only, nothing allow-listed.
STRICT = OutboundPolicy()


@dataclass(frozen=True, slots=True)
class Workspace:
    """The tenant credentials belong to."""

    org_id: str
    workspace_id: str


def key_hint(api_key: str) -> str:
    """What may be shown of a key: ``…`` and its last four characters, or ``…`` alone."""
    return "…" + api_key[-4:] if len(api_key) >= HINT_MIN_CHARS else "…"


def _context(credential: ProviderCredential) -> str:
    # Bound into both seals: a ciphertext moved to another row, tenant or provider fails.
    return (f"provider-credential:v1:{credential.id}:{credential.org_id}:"
            f"{credential.workspace_id}:{credential.provider}")


def _check_key(api_key: str) -> str:
    if not api_key or len(api_key) > MAX_KEY_CHARS or not _KEY.match(api_key):
        raise InvalidRequest(
            f"api_key must be 1 to {MAX_KEY_CHARS} printable characters without spaces",
            field="api_key",
        )
    return api_key


def check_provider(provider: str) -> str:
    """The provider name, lower-cased; 400 unless it has the shape of one."""
    name = provider.strip().lower()
    if not _PROVIDER.match(name):
        raise InvalidRequest("provider must be a LiteLLM provider name such as 'openai'",
                             field="provider")
    return name


def check_api_base(api_base: str | None, outbound: OutboundPolicy) -> str | None:
    """``api_base`` as stored (no trailing ``/``), or None; 400 ``outbound_url_refused``
    unless ``outbound`` accepts it (https to a public address, no credentials in it, or a
    host the operator allow-listed). May block on DNS."""
    if api_base is None:
        return None
    return outbound.check_url(api_base.strip(), field="api_base").rstrip("/")


def _seal(envelope: Envelope, credential: ProviderCredential, api_key: str) -> None:
    sealed = envelope.seal(_check_key(api_key).encode(), context=_context(credential))
    credential.key_id = sealed.key_id
    credential.wrapped_key = sealed.wrapped_key
    credential.ciphertext = sealed.ciphertext
    credential.key_hint = key_hint(api_key)


def create_credential(db: Session, envelope: Envelope, workspace: Workspace, *,
                      provider: str, api_key: str, outbound: OutboundPolicy = STRICT,
                      api_base: str | None = None, api_version: str | None = None,
                      name: str | None = None,
                      created_by: str | None = None) -> ProviderCredential:
    """Store a new credential; 409 if the workspace has one for this provider already, 400
    if ``outbound`` refuses ``api_base``."""
    provider = check_provider(provider)
    _check_key(api_key)
    api_base = check_api_base(api_base, outbound)
    if credential_for(db, workspace, provider) is not None:
        raise Conflict(f"the workspace has a credential for {provider!r}; update or delete it",
                       field="provider")
    now = utcnow()
    credential = ProviderCredential(
        id=str(uuid.uuid4()), org_id=workspace.org_id, workspace_id=workspace.workspace_id,
        provider=provider, name=name, api_base=api_base,
        api_version=api_version, created_by=created_by, created_at=now, updated_at=now,
    )
    _seal(envelope, credential, api_key)
    db.add(credential)
    try:
        db.flush()
    except IntegrityError:  # a concurrent create for the same provider won
        raise Conflict(f"the workspace has a credential for {provider!r}",
                       field="provider") from None
    return credential


def list_credentials(db: Session, workspace: Workspace) -> list[ProviderCredential]:
    return list(db.scalars(
        select(ProviderCredential)
        .where(ProviderCredential.org_id == workspace.org_id,
               ProviderCredential.workspace_id == workspace.workspace_id)
        .order_by(ProviderCredential.provider)))


def get_credential(db: Session, workspace: Workspace, credential_id: str) -> ProviderCredential:
    credential = db.get(ProviderCredential, credential_id)
    if (credential is None or credential.org_id != workspace.org_id
            or credential.workspace_id != workspace.workspace_id):
        raise NotFound("provider credential not found")
    return credential


def credential_for(db: Session, workspace: Workspace,
                   provider: str) -> ProviderCredential | None:
    """The workspace's credential for ``provider``, if it has one."""
    return db.scalars(select(ProviderCredential).where(
        ProviderCredential.org_id == workspace.org_id,
        ProviderCredential.workspace_id == workspace.workspace_id,
        ProviderCredential.provider == provider)).first()


def update_credential(db: Session, envelope: Envelope, credential: ProviderCredential, *,
                      changes: dict[str, Any], outbound: OutboundPolicy = STRICT) -> None:
    """Rotate the key and/or change ``api_base``, ``api_version``, ``name`` (keys present in
    ``changes``; a None value clears the optional fields).

    A changed ``api_base`` (set, changed or cleared) needs ``api_key`` in the same change,
    else 400 with field ``api_key``: the endpoint a key is sent to changes only together
    with the key. ``outbound`` must accept the new ``api_base`` (400 otherwise)."""
    if "api_key" in changes and changes["api_key"] is None:
        raise InvalidRequest("api_key cannot be cleared; delete the credential",
                             field="api_key")
    if "api_base" in changes:
        requested = changes["api_base"]
        # Checked before the URL itself, so the answer never depends on where it points.
        as_given = requested.strip().rstrip("/") if requested is not None else None
        if as_given != credential.api_base and changes.get("api_key") is None:
            raise InvalidRequest(
                "changing api_base requires the provider key again: send api_key with the "
                "new api_base (the stored key is never sent to a new endpoint)",
                field="api_key")
        credential.api_base = check_api_base(requested, outbound)
    if "api_key" in changes:
        _seal(envelope, credential, changes["api_key"])
    if "api_version" in changes:
        credential.api_version = changes["api_version"]
    if "name" in changes:
        credential.name = changes["name"]
    credential.updated_at = utcnow()
    db.flush()


def delete_credential(db: Session, credential: ProviderCredential) -> None:
    db.delete(credential)
    db.flush()


def reveal(envelope: Envelope, credential: ProviderCredential) -> str:
    """The provider key in the clear: for the call to the provider only, never to show."""
    sealed = Sealed(credential.key_id, credential.wrapped_key, credential.ciphertext)
    return envelope.open(sealed, context=_context(credential)).decode()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def describe(credential: ProviderCredential) -> dict[str, Any]:
    """The credential as an API shows it: everything but the key, which is a hint only."""
    return {
        "id": credential.id, "provider": credential.provider, "name": credential.name,
        "api_base": credential.api_base, "api_version": credential.api_version,
        "key_hint": credential.key_hint, "workspace_id": credential.workspace_id,
        "created_by": credential.created_by, "created_at": _iso(credential.created_at),
        "updated_at": _iso(credential.updated_at),
    }
