"""Reading request bodies safely: a size limit before and after decompression."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from apiary.errors import MalformedPayload, PayloadTooLarge, UnsupportedMediaType


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or :class:`PayloadTooLarge` as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise MalformedPayload("Content-Length is not a number") from None
        if size > limit:
            raise PayloadTooLarge("request body is too large", size=size, limit=limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge("request body is too large", size=received, limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate or identity), never inflating past ``limit``.

    A compressed body that would expand beyond ``limit`` (a zip bomb, or simply too much
    data) is refused with :class:`PayloadTooLarge` without being expanded further.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use gzip or none",
            content_type=encoding,
        )
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedPayload(f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge("decompressed request body is too large", limit=limit)
    if not inflater.eof:
        raise MalformedPayload(f"{encoding} body is truncated")
    return out
