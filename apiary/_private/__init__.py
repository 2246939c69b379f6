"""Internals of Apiary shared across its packages. Nothing here is public API.

- :mod:`.compiled`: which compiled hot-path modules exist and whether they match their
  sources (checked when :mod:`apiary` is imported).
- :mod:`.files`: files in the data directory, owner-only.
- :mod:`.logs`: structured logs (JSON lines or text).
- :mod:`.metrics`: Prometheus metrics on a registry of Apiary's own.
- :mod:`.sqldb`: what the control plane's and the data plane's SQL databases share.

Private to :mod:`apiary` as a whole (any apiary module may import it; nothing outside
should). It sits below every foundation but :mod:`apiary.event`, :mod:`apiary.settings`
and :mod:`apiary.errors`, which are all it imports.
"""

__all__ = ["compiled", "files", "logs", "metrics", "sqldb"]
