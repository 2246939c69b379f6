"""When each API key was last used, written cheaply.

:class:`LastUsedRecorder` (one per :class:`~apiary.control.service.ControlPlane`) writes
``api_keys.last_used_at`` at most once per ``cp_key_last_used_resolution_s`` per key: the
write is skipped entirely while this process wrote it recently, and otherwise is a
conditional UPDATE, a no-op when another replica wrote it within the resolution.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from apiary.control.db import ApiKey


class LastUsedRecorder:
    """Writes ``api_keys.last_used_at`` at most once per ``resolution_s`` per key."""

    def __init__(self, resolution_s: int) -> None:
        self._resolution = timedelta(seconds=resolution_s)
        self._written: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def record(self, db: Session, key_id: str, now: datetime) -> None:
        with self._lock:
            last = self._written.get(key_id)
            if last is not None and now - last < self._resolution:
                return
            self._written[key_id] = now
            if len(self._written) > 100_000:  # bound memory; forgetting only costs a write
                self._written.clear()
        # Another replica may have written it: the condition keeps this a no-op then.
        db.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None),
                                            ApiKey.last_used_at <= now - self._resolution))
            .values(last_used_at=now)
        )
