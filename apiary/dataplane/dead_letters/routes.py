"""``/v1/admin/dead-letters``: list, show, replay and purge dead letters over HTTP.

The same operations as ``apiary dlq`` (:mod:`apiary.queue.dead_letters` does the work).
Every route requires the data plane's admin token (:func:`~apiary.dataplane.auth.
require_operator`): 401 without a bearer credential, 403 for any other credential (API keys
and user tokens included, whatever their permissions) and while no admin token is
configured. A dead letter holds whole events of any project, so no tenant's credential may
read it.

- ``GET /v1/admin/dead-letters``: counts (by reason, stage, both, stream) of the dead
  letters the filters match, and up to ``limit`` of them (no payloads): each with its
  ``stage`` (the writer's stage that failed, e.g. ``insert``, ``enrich``, ``crash_loop``),
  ``project_id`` and ``rows``.
- ``GET /v1/admin/dead-letters/{id}``: one dead letter with its headers and payload.
- ``POST /v1/admin/dead-letters/replay``: replay the selected dead letters into their
  streams under their original message ids; the answer says, by id, which were replayed,
  which were already back in the stream, which JetStream would still drop as duplicates of
  the original (kept, with ``retry_after``) and which failed (kept).
- ``DELETE /v1/admin/dead-letters/{id}``: remove one (404 if there is none);
  ``POST /v1/admin/dead-letters/purge``: remove the selected ones.

A selection names ``ids``, or filters (``stream``, ``reason``, ``stage``, ``project_id``), or
``all: true``; an empty one is refused (400), so nothing acts on every dead letter unasked.
Replays and purges are logged (``apiary.dead_letters``) with the ids they touched.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from apiary.dataplane.auth import require_operator
from apiary.dataplane.replica.context import context_of
from apiary.dataplane.replica.routing import ERRORS
from apiary.errors import InvalidRequest
from apiary.objects import object_store
from apiary.queue.dead_letters import DeadLetters, Selection, counts

router = APIRouter(tags=["operations"])

BASE = "/v1/admin/dead-letters"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: ERRORS[code] for code in (400, 401, 403, 404, 409, 503)}
_NAME = r"^[A-Za-z0-9_.-]{1,200}$"
Filter = Annotated[str | None, Query(pattern=_NAME)]


class DeadLetterSummary(BaseModel):
    id: str
    stream: str
    subject: str
    project_id: str | None
    stream_sequence: int
    deliveries: int | None
    msg_id: str
    reason: str
    stage: str
    error: str
    dead_lettered_at: float | None
    size: int
    rows: int | None = Field(default=None, description="Events the record holds, when it "
                             "says (records written before stages were recorded do not)")


class DeadLetterDetail(DeadLetterSummary):
    headers: dict[str, str]
    payload: dict[str, Any] = Field(description="'encoding' (json, arrow or base64) and the "
                                    "payload decoded as far as it decodes")


class ReasonStageCount(BaseModel):
    reason: str
    stage: str
    count: int


class DeadLetterCounts(BaseModel):
    total: int
    by_reason: dict[str, int]
    by_stage: dict[str, int]
    by_stream: dict[str, int]
    by_reason_and_stage: list[ReasonStageCount]


class DeadLetterList(BaseModel):
    counts: DeadLetterCounts
    dead_letters: list[DeadLetterSummary] = Field(description="The first `limit` matches, by "
                                                  "stream and stream sequence")


class DeadLetterOne(BaseModel):
    dead_letter: DeadLetterDetail


class DeadLetterSelection(BaseModel):
    """Which dead letters to replay or purge; every filter given must match."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(pattern=_NAME)]] = Field(default_factory=list,
                                                            max_length=10_000)
    stream: str | None = Field(default=None, pattern=_NAME)
    reason: str | None = Field(default=None, pattern=_NAME)
    stage: str | None = Field(default=None, pattern=_NAME)
    project_id: str | None = Field(default=None, pattern=_NAME)
    all: bool = Field(default=False, description="Select every dead letter (with no filter)")

    def selection(self) -> Selection:
        selection = Selection(ids=tuple(self.ids), stream=self.stream, reason=self.reason,
                              stage=self.stage, project_id=self.project_id,
                              everything=self.all)
        if selection.empty:
            raise InvalidRequest("select dead letters by ids or filters, or send all: true",
                                 field="ids")
        return selection


class Deferred(BaseModel):
    id: str
    error: str
    retry_after: float | None = None


class Failed(BaseModel):
    id: str
    error: str


class ReplayResult(BaseModel):
    replayed: list[str]
    already_replayed: list[str]
    deferred: list[Deferred]
    failed: list[Failed]


class PurgeResult(BaseModel):
    purged: list[str]


def _dead_letters(request: Request) -> DeadLetters:
    """The operator's view of the dead letters, after checking the caller is the operator."""
    context = context_of(request)
    require_operator(context.settings.admin_token, request.headers.get("authorization"))
    state = request.app.state
    if getattr(state, "dead_letter_objects", None) is None:  # one S3 client per replica
        state.dead_letter_objects = object_store(context.settings)
    return DeadLetters(state.dead_letter_objects, context.js,
                       publish_timeout_s=context.settings.ingest_publish_timeout_s)


@router.get(BASE, summary="Dead letters: counts and a list (operator only)",
            response_model=DeadLetterList, responses=_ERRORS)
async def list_dead_letters(
    request: Request, stream: Filter = None, reason: Filter = None, stage: Filter = None,
    project_id: Filter = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    dead = _dead_letters(request)
    letters = await dead.select(Selection(stream=stream, reason=reason, stage=stage,
                                          project_id=project_id, everything=True))
    return {"counts": counts(letters), "dead_letters": [d.summary() for d in letters[:limit]]}


@router.get(BASE + "/{dead_letter_id}", summary="One dead letter with its payload "
            "(operator only)", response_model=DeadLetterOne, responses=_ERRORS)
async def get_dead_letter(request: Request, dead_letter_id: str) -> dict[str, Any]:
    dead = _dead_letters(request)
    return {"dead_letter": (await dead.get(dead_letter_id)).detail()}


@router.post(BASE + "/replay", summary="Replay dead letters into their streams under their "
             "original message ids (operator only)", response_model=ReplayResult,
             responses=_ERRORS)
async def replay_dead_letters(request: Request, body: DeadLetterSelection) -> dict[str, Any]:
    dead = _dead_letters(request)
    letters = await dead.select(body.selection())
    return (await dead.replay_all(letters)).as_dict()


@router.post(BASE + "/purge", summary="Remove dead letters for good (operator only)",
             response_model=PurgeResult, responses=_ERRORS)
async def purge_dead_letters(request: Request, body: DeadLetterSelection) -> dict[str, Any]:
    dead = _dead_letters(request)
    letters = await dead.select(body.selection())
    for letter in letters:
        await dead.purge(letter)
    return {"purged": [d.id for d in letters]}


@router.delete(BASE + "/{dead_letter_id}", summary="Remove one dead letter for good "
               "(operator only)", response_model=PurgeResult, responses=_ERRORS)
async def delete_dead_letter(request: Request, dead_letter_id: str) -> dict[str, Any]:
    dead = _dead_letters(request)
    letter = await dead.get(dead_letter_id)
    await dead.purge(letter)
    return {"purged": [letter.id]}
