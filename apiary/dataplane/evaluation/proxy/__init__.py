"""The LLM proxy: OpenAI-compatible chat completions routed by LiteLLM with the calling
workspace's provider keys, traced as model events.

- :mod:`.service`: :class:`~apiary.dataplane.evaluation.proxy.service.ChatProxy`, the whole call
  (routing, key, LiteLLM, errors, tracing), usable over HTTP
  (``apiary.dataplane.evaluation.proxy.routes``) or in-process.
- :mod:`.request`: the accepted request body (OpenAI's parameters, nothing else).
- :mod:`.credentials`: provider keys per workspace in dpdb, sealed by :mod:`.envelope`.
- :mod:`.errors`: provider failures as precise statuses, keys redacted.
- :mod:`.tracing`: the model event of a call and its background publication.
- :mod:`.routes`, :mod:`.schemas`: ``POST /v1/chat/completions`` and the workspace's
  provider credentials over HTTP.
- :mod:`.runtime`: building a :class:`ChatProxy` outside a request (LLM judges).

Its modules are imported by name; this package imports none of them.
"""

__all__ = [
    "credentials",
    "envelope",
    "errors",
    "request",
    "routes",
    "runtime",
    "schemas",
    "service",
    "tracing",
]
