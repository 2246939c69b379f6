"""The OpenAPI document an app serves, made to say what the app really answers.

FastAPI documents a ``422`` validation error on every operation with parameters or a
body, but Apiary answers those with ``400`` and ``{"message", "errorCode"}``
(:mod:`apiary.web.errors`). :func:`describe_errors` makes ``app.openapi()`` (and so
``/openapi.json``) say that: every ``422`` becomes a documented ``400``
(:class:`~apiary.web.errors.ErrorResponse`) unless the operation documents one
already, and the FastAPI validation schemas, then unused, are dropped. ``errors`` documents error
statuses on every operation that does not (for apps whose routes declare none, such as
the control plane's: :data:`COMMON_ERRORS`). With ``bearer=True`` it also
declares the ``Authorization: Bearer <API key or token>`` scheme for every operation except
the ``public`` paths. The document is built once and cached, as FastAPI does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from apiary.web.errors import ErrorResponse

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
#: What any route of an app whose routes document no errors may answer (an
#: :class:`~apiary.errors.ApiaryError` becomes one of these; see apiary.web.errors).
COMMON_ERRORS: dict[int, str] = {
    400: "Invalid request (the message names the field)",
    401: "Missing, unknown or expired credentials",
    403: "The credentials lack the permission",
    404: "Not found (or not visible to the caller)",
    409: "Clashes with existing state",
    410: "Expired or already used",
    429: "Too many attempts; retry after Retry-After seconds",
}
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


def _error_schema() -> dict[str, Any]:
    schema: dict[str, Any] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}")
    return schema


def _bad_request() -> dict[str, Any]:
    return {"description": "Invalid request: a parameter or the body is malformed "
                           "(the message names the field)",
            "content": {"application/json": {"schema": dict(_ERROR_REF)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": dict(_ERROR_REF)}}}


def rewrite(spec: dict[str, Any], *, bearer: bool = False, public: Iterable[str] = (),
            errors: Mapping[int, str] | None = None) -> dict[str, Any]:
    """``spec`` (a FastAPI OpenAPI document) with 422s as 400s; ``errors`` (status →
    description) documented on every operation that does not document that status; with
    ``bearer``, the bearer security scheme on every operation whose path is not in
    ``public``."""
    public = frozenset(public)
    used_error = False
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                used_error = True
                responses.setdefault("400", _bad_request())
            for status, description in (errors or {}).items():
                used_error = True
                responses.setdefault(str(status), _error(description))
            if bearer and path in public:
                operation["security"] = []
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    if used_error:
        schemas.setdefault("ErrorResponse", _error_schema())
        for name in _VALIDATION_SCHEMAS:  # dependants first
            others = {k: v for k, v in schemas.items() if k != name}
            text = json.dumps([spec.get("paths"), others])
            if f'"#/components/schemas/{name}"' not in text:
                schemas.pop(name, None)
    if bearer:
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer",
            "description": "An API key (project or workspace) or an access token signed "
                           "by the control plane."}
        spec["security"] = [{"bearer": []}]
    return spec


def describe_errors(app: FastAPI, *, bearer: bool = False, public: Iterable[str] = (),
                    errors: Mapping[int, str] | None = None) -> None:
    """Serve :func:`rewrite`'s document as ``app``'s OpenAPI (module docstring)."""
    public = tuple(public)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version,
                               openapi_version=app.openapi_version,
                               description=app.description, routes=app.routes,
                               servers=app.servers, tags=app.openapi_tags)
            app.openapi_schema = rewrite(spec, bearer=bearer, public=public,
                                         errors=errors)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
