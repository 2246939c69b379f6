"""The data plane's client of the control plane's configuration API (the trusted seam).

Prompt templates and evaluator definitions are control-plane configuration
(docs/architecture.md, "Two planes, one seam"): the data plane never stores them. It serves
them by calling the control plane's project API
(``/v1/projects/{project_id}/prompts|evaluators...``) **with the caller's own API key**, so
the control plane authenticates the caller and checks its permission itself; the data plane
adds no privilege of its own and holds no control-plane secret.

- A caller holding a *token* gets 403 before anything is sent: the token was minted for
  this data plane, the control plane refuses every token not minted for it (so a token a
  data plane sees can never act on the control plane), and a data plane must not be able to
  turn its callers' tokens into control-plane credentials. Such a caller reads and changes
  configuration at the control plane itself (with a session or a control-plane token), or
  here with an API key.

- The URL is the configured one only (``APIARY_CONTROL_PLANE_URL``, else the control plane
  ``apiary up`` runs at ``<base URL>/cp``); ids from callers go into paths only after
  matching :data:`ID_PATTERN`, so a crafted id cannot address another route.
- Control-plane answers keep their meaning: 400/401/403/404/409 become the same
  :mod:`apiary.errors` with the control plane's message; anything else (5xx, 429, a
  timeout, no connection, a body that is not JSON) is
  :class:`~apiary.errors.ControlPlaneUnavailable` (503, retryable).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from apiary.credentials import looks_like_jwt
from apiary.errors import (
    ApiaryError,
    AuthenticationFailed,
    Conflict,
    ControlPlaneUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from apiary.settings import ApiarySettings

#: What a control-plane id (a UUID) may look like before it goes into a path.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_ERRORS: dict[int, type[ApiaryError]] = {
    400: InvalidRequest, 401: AuthenticationFailed, 403: PermissionDenied, 404: NotFound,
    409: Conflict, 422: InvalidRequest,
}


def control_plane_base_url(settings: ApiarySettings) -> str:
    """Where this data plane reaches its control plane's API."""
    return settings.control_plane_url or settings.cp_issuer_url


def path_id(value: str, what: str) -> str:
    """``value`` if it can be a control-plane id, else NotFound (it names nothing)."""
    if not ID_PATTERN.match(value):
        raise NotFound(f"{what} not found")
    return value


class ControlPlaneClient:
    """Async calls to the control plane, each with the caller's bearer credential."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = client
        self._owns_client = client is None

    @classmethod
    def from_settings(cls, settings: ApiarySettings) -> ControlPlaneClient:
        return cls(control_plane_base_url(settings))

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def request(self, method: str, path: str, credential: str, *,
                      json: Any = None, params: dict[str, str] | None = None) -> Any:
        """Call ``path`` (under the base URL) as the caller; the decoded JSON answer
        (None for 204), or the error the answer means (module docstring). A token as
        ``credential`` is refused (403) without a request: only API keys are forwarded."""
        if looks_like_jwt(credential):
            raise PermissionDenied(
                "configuration (prompt templates, evaluators) is held by the control plane, "
                "which does not accept tokens minted for a data plane: call this endpoint "
                "with an API key, or use the control plane's API "
                "(/v1/projects/{project_id}/prompts or /evaluators) with a session or a "
                "control-plane token")
        if self._client is None:
            self._client = httpx.AsyncClient()
        url = self.base_url + path
        try:
            response = await self._client.request(
                method, url, json=json, params=params, timeout=self.timeout_s,
                headers={"Authorization": f"Bearer {credential}"}, follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise ControlPlaneUnavailable("could not reach the control plane", url=url,
                                          error=str(exc) or type(exc).__name__) from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= response.status_code < 300:
            if body is None:
                raise ControlPlaneUnavailable("the control plane answered without JSON",
                                              url=url)
            return body
        error = _ERRORS.get(response.status_code)
        message = body.get("message") if isinstance(body, dict) else None
        if error is None:
            raise ControlPlaneUnavailable(
                f"the control plane answered HTTP {response.status_code}", url=url)
        details = body.get("details") if isinstance(body, dict) else None
        field = details.get("field") if isinstance(details, dict) else None
        raise error(str(message or f"the control plane refused ({response.status_code})"),
                    field=field if isinstance(field, str) else None)

    # --- prompt templates -----------------------------------------------------------------

    def _prompts(self, project_id: str) -> str:
        return f"/v1/projects/{path_id(project_id, 'project')}/prompts"

    async def list_prompts(self, credential: str, project_id: str,
                           name: str | None = None) -> list[dict[str, Any]]:
        params = {"name": name} if name is not None else None
        found: list[dict[str, Any]] = await self.request(
            "GET", self._prompts(project_id), credential, params=params)
        return found

    async def get_prompt(self, credential: str, project_id: str, template_id: str
                         ) -> dict[str, Any]:
        found: dict[str, Any] = await self.request(
            "GET", f"{self._prompts(project_id)}/{path_id(template_id, 'configuration')}",
            credential)
        return found

    async def create_prompt(self, credential: str, project_id: str, body: dict[str, Any]
                            ) -> dict[str, Any]:
        created: dict[str, Any] = await self.request(
            "POST", self._prompts(project_id), credential, json=body)
        return created

    async def add_prompt_version(self, credential: str, project_id: str, template_id: str,
                                 body: dict[str, Any]) -> dict[str, Any]:
        version: dict[str, Any] = await self.request(
            "POST", f"{self._prompts(project_id)}/{path_id(template_id, 'configuration')}"
            "/versions", credential, json=body)
        return version

    async def rename_prompt(self, credential: str, project_id: str, template_id: str,
                            name: str) -> None:
        await self.request(
            "PATCH", f"{self._prompts(project_id)}/{path_id(template_id, 'configuration')}",
            credential, json={"name": name})

    async def set_prompt_tags(self, credential: str, project_id: str, template_id: str,
                              tags: list[str]) -> None:
        await self.request(
            "PUT", f"{self._prompts(project_id)}/{path_id(template_id, 'configuration')}"
            "/tags", credential, json={"tags": tags})

    async def set_prompt_environment(self, credential: str, project_id: str,
                                     template_id: str, environment: str, version: int) -> None:
        await self.request(
            "PUT", f"{self._prompts(project_id)}/{path_id(template_id, 'configuration')}"
            f"/environments/{path_id(environment, 'environment')}", credential,
            json={"version": version})

    async def clear_prompt_environment(self, credential: str, project_id: str,
                                       template_id: str, environment: str) -> None:
        await self.request(
            "DELETE", f"{self._prompts(project_id)}/{path_id(template_id, 'configuration')}"
            f"/environments/{path_id(environment, 'environment')}", credential)

    async def delete_prompt(self, credential: str, project_id: str, template_id: str) -> None:
        await self.request(
            "DELETE", f"{self._prompts(project_id)}/{path_id(template_id, 'configuration')}",
            credential)

    # --- evaluators -----------------------------------------------------------------------

    def _evaluators(self, project_id: str) -> str:
        return f"/v1/projects/{path_id(project_id, 'project')}/evaluators"

    async def list_evaluators(self, credential: str, project_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.request(
            "GET", self._evaluators(project_id), credential)
        return found

    async def get_evaluator(self, credential: str, project_id: str, evaluator_id: str
                            ) -> dict[str, Any]:
        found: dict[str, Any] = await self.request(
            "GET", f"{self._evaluators(project_id)}/{path_id(evaluator_id, 'metric')}",
            credential)
        return found

    async def create_evaluator(self, credential: str, project_id: str, body: dict[str, Any]
                               ) -> dict[str, Any]:
        created: dict[str, Any] = await self.request(
            "POST", self._evaluators(project_id), credential, json=body)
        return created

    async def update_evaluator(self, credential: str, project_id: str, evaluator_id: str,
                               body: dict[str, Any]) -> dict[str, Any]:
        updated: dict[str, Any] = await self.request(
            "PATCH", f"{self._evaluators(project_id)}/{path_id(evaluator_id, 'metric')}",
            credential, json=body)
        return updated

    async def add_evaluator_version(self, credential: str, project_id: str,
                                    evaluator_id: str, body: dict[str, Any]
                                    ) -> dict[str, Any]:
        version: dict[str, Any] = await self.request(
            "POST", f"{self._evaluators(project_id)}/{path_id(evaluator_id, 'metric')}"
            "/versions", credential, json=body)
        return version

    async def deploy_evaluator(self, credential: str, project_id: str, evaluator_id: str,
                               version: int) -> dict[str, Any]:
        deployed: dict[str, Any] = await self.request(
            "POST", f"{self._evaluators(project_id)}/{path_id(evaluator_id, 'metric')}"
            "/deploy", credential, json={"version": version})
        return deployed

    async def delete_evaluator(self, credential: str, project_id: str, evaluator_id: str
                               ) -> None:
        await self.request(
            "DELETE", f"{self._evaluators(project_id)}/{path_id(evaluator_id, 'metric')}",
            credential)
