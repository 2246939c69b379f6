"""Event ids derived from OpenTelemetry span ids.

An event made from a span gets an id that is a pure function of ``(trace_id, span_id)``,
so that a retried export, a child span in a later request (``parent_id``) and any other
component that knows the span ids all arrive at the same id without coordination.
Changing this function orphans every stored parent link: it must stay as it is.
"""

from __future__ import annotations

from hashlib import blake2b

# RFC 9562 variant bits (10xx) for the 17th hex digit, keeping the hash's low two bits.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def derive_event_id(trace_id: str, span_id: str) -> str:
    """The UUID-formatted event id of the span ``span_id`` in trace ``trace_id``.

    Both ids are lowercase hex (32 and 16 characters). The result is the 128-bit BLAKE2b
    digest of their concatenation, shaped as an RFC 9562 version-8 ("custom") UUID.
    """
    h = blake2b(f"{trace_id}{span_id}".encode("ascii"), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
