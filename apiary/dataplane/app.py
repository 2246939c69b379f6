"""The data plane's HTTP application: routes, error handling, liveness (``/healthz``),
readiness (``/readyz``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import apiary
from apiary._private import metrics
from apiary.dataplane.accounting import routes as accounting
from apiary.dataplane.charts import routes as charts
from apiary.dataplane.configuration import routes_metrics as metric_definitions
from apiary.dataplane.configuration import routes_prompts as configurations
from apiary.dataplane.datasets import routes_datapoints as datapoints
from apiary.dataplane.datasets import routes_datasets as datasets
from apiary.dataplane.dead_letters import routes as dead_letters
from apiary.dataplane.evaluation import routes as evaluations
from apiary.dataplane.evaluation import routes_draft as draft_evaluations
from apiary.dataplane.evaluation.proxy import routes as proxy
from apiary.dataplane.events import routes_events as events
from apiary.dataplane.events import routes_query as query
from apiary.dataplane.events import routes_schema as event_schema
from apiary.dataplane.events import routes_sessions as sessions
from apiary.dataplane.experiments import routes as runs
from apiary.dataplane.ingest import routes as ingest
from apiary.dataplane.replica.context import DataPlaneContext, context_of
from apiary.dataplane.replica.readiness import Readiness, readiness
from apiary.dataplane.review import routes as queues
from apiary.web.errors import install_error_handlers
from apiary.web.openapi import describe_errors


def create_app(context: DataPlaneContext) -> FastAPI:
    """The FastAPI app of one data-plane replica, serving with ``context``."""
    app = FastAPI(
        title="Apiary data plane",
        version=apiary.__version__,
        description="Trace ingestion (OTLP/HTTP) and the HoneyHive-compatible query API.",
    )
    app.state.dataplane = context
    install_error_handlers(app)
    describe_errors(app, bearer=True, public=("/healthz", "/readyz", "/metrics"))
    if context is not None and context.settings.cors_origins:
        # The web UI calls this plane from the control plane's origin with a data-plane
        # token in Authorization: exact origins only, never credentials (cookies).
        app.add_middleware(
            CORSMiddleware, allow_origins=list(context.settings.cors_origins),
            allow_credentials=False, allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"], max_age=600,
        )
    app.include_router(ingest.router)
    app.include_router(query.router)
    app.include_router(sessions.router)
    app.include_router(event_schema.router)  # before events: /v1/events/schema vs /{event_id}
    app.include_router(events.router)
    app.include_router(datasets.router)
    app.include_router(datapoints.router)
    app.include_router(runs.router)
    app.include_router(metric_definitions.router)
    app.include_router(configurations.router)
    app.include_router(evaluations.router)
    app.include_router(draft_evaluations.router)
    app.include_router(proxy.router)
    app.include_router(queues.router)
    app.include_router(charts.router)
    app.include_router(dead_letters.router)
    app.include_router(accounting.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the replica answers")
    async def healthz(request: Request) -> JSONResponse:
        """200 while this replica's process serves requests, whatever its dependencies do
        (those are ``/readyz``); the body shows the pipeline state this replica last saw."""
        ctx = context_of(request)
        return JSONResponse({
            "status": "ok",
            "nats_connected": ctx.nc.is_connected,
            "events_backlog": ctx.backlog,
            "inflight": ctx.inflight,
            "version": apiary.__version__,
        })

    @app.get("/readyz", tags=["operations"], response_model=Readiness,
             summary="Readiness: NATS, the event store, every writer loop, the writers' lag",
             responses={503: {"description": "Not ready: not_ready names the failing checks",
                              "model": Readiness}})
    async def readyz(request: Request) -> JSONResponse:
        """200 when JetStream and the event store answer, every writer loop runs and the
        writers' lag is under ``ready_backlog_limit``; else 503 with the same body naming
        what is not ready (:mod:`apiary.dataplane.replica.readiness`)."""
        ctx = context_of(request)
        state = await readiness(ctx.settings, ctx.js, ctx.store)
        return JSONResponse(state.model_dump(), status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics of this replica",
             response_class=Response, responses={200: {"content": {
                 CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
