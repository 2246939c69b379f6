"""dpdb table of the LLM proxy: provider credentials, encrypted, one per workspace and provider.

A row never holds a provider key in the clear. ``ciphertext`` is the key sealed with a
random per-row data key (AES-256-GCM), and ``wrapped_key`` is that data key sealed with
the data plane's envelope key, named by ``key_id``
(:mod:`apiary.dataplane.evaluation.proxy.envelope`). Both seals are bound to the row (its id, tenant
and provider) through their associated data, so a ciphertext copied into another row, workspace or
provider does not decrypt. ``key_hint`` is the only part of the key that is ever shown (its last
four characters, for long keys).

Credentials belong to a workspace (``org_id``, ``workspace_id``), not a project: every
project of the workspace calls providers with the same keys. The tenant columns are plain
text: the control plane owns tenancy.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from apiary.dataplane.db._base import Base, UTCDateTime


class ProviderCredential(Base):
    __tablename__ = "provider_credentials"
    # One credential per provider in a workspace: the proxy never has to choose.
    __table_args__ = (UniqueConstraint("org_id", "workspace_id", "provider"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    api_base: Mapped[str | None] = mapped_column(String(2000))
    api_version: Mapped[str | None] = mapped_column(String(64))
    key_hint: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str] = mapped_column(String(32))
    wrapped_key: Mapped[str] = mapped_column(Text)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
