"""HTTP foundations both planes use: errors as responses, OpenAPI documents that say what
an app really answers, request bodies read within limits.

- :mod:`.errors`: how errors reach API callers: a precise status and
  ``{"message", "errorCode"}``.
- :mod:`.openapi`: the OpenAPI document an app serves, made to say what it really answers.
- :mod:`.body`: reading request bodies safely: a size limit before and after
  decompression.

A foundation: it imports neither plane (only :mod:`apiary.errors`), and both planes' apps
import it. Its modules are imported by name; this package imports none of them.
"""

__all__ = ["body", "errors", "openapi"]
