"""Structured logs: one JSON object per line (or plain text), with the ``extra`` fields."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from apiary.settings import ApiarySettings

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(settings: ApiarySettings) -> None:
    """Send ``apiary.*`` loggers to stderr in the configured format, once per process."""
    root = logging.getLogger("apiary")
    if getattr(root, "_apiary_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    root.propagate = False
    root._apiary_configured = True  # type: ignore[attr-defined]
