"""How errors reach API callers: a precise status and ``{"message", "errorCode"}``.

Every :class:`~apiary.errors.ApiaryError` becomes its own status with that body (and
``Retry-After`` when the caller should come back later). FastAPI's validation errors
become 400 ``invalid_request`` naming the offending field. Anything else is a bug: it is
logged with its traceback and answered 500 without internals.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apiary.errors import ApiaryError, Overloaded

log = logging.getLogger("apiary.api")


class ErrorResponse(BaseModel):
    """The body of every error answer, on both planes."""

    message: str
    errorCode: str
    details: dict[str, Any] | None = None


def error_response(exc: ApiaryError) -> Response:
    headers = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif exc.retryable and exc.status == 503:  # e.g. JetStream or the store unreachable
        headers["Retry-After"] = "1"
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiaryError)
    async def _apiary_error(request: Request, exc: ApiaryError) -> Response:
        if exc.status >= 500:
            log.warning("request failed", extra={"path": request.url.path, "error": str(exc)})
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(
            {"message": "invalid request: " + "; ".join(problems),
             "errorCode": "invalid_request"},
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"message": str(exc.detail), "errorCode": code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> Response:
        # Only pathological input nests deep enough to exhaust the interpreter's stack
        # (a JSON body nested ~1,000 levels, parsed before any handler runs).
        return JSONResponse(
            {"message": "the request body is nested too deeply", "errorCode": "invalid_request"},
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(
            {"message": "internal error", "errorCode": "internal_error"}, status_code=500
        )
