"""The storefront API and the dashboard's server: FastAPI routes over what Redis holds.

Every input is checked (ids as in the event contract, bounds on ``k``) and
every error is a JSON ``{"error": ...}`` that never repeats the request's input
(``streams.api.schemas``). The routes come in groups, a module each: the storefront's
(``storefront``), ``POST /events`` (``event_route``), and the dashboard's and operations'
(``monitoring_routes``). The OpenAPI description is served at ``/openapi.json``.
"""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from streams.api.dashboard import Dashboard
from streams.api.event_intake import EventIntake
from streams.api.event_route import event_routes
from streams.api.guards import RequestGuard
from streams.api.health import HealthCheck
from streams.api.monitoring_routes import Reports, dashboard_routes, operations_routes
from streams.api.schemas import error
from streams.api.storefront import ListReader, storefront_routes
from streams.connections import async_redis_client
from streams.online_summaries import WINDOW_STEP_SECONDS
from streams.settings import Settings
from streams.validation import ID_RULE


def create_api(settings: Settings) -> FastAPI:
    client = async_redis_client(settings)
    registry = CollectorRegistry()
    intake = EventIntake(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Everything made at start-up lives as long as the process: keeping it out of the
        # collector's scans removes pauses of tens of milliseconds from the request path.
        gc.freeze()
        yield
        await intake.close()
        await client.aclose()

    api = FastAPI(title="recsys storefront API", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Recommendations, similar items, segments and popular items, as the workers keep "
                              "them in Redis; plus health, metrics and the monitoring dashboard.")
    api.add_middleware(RequestGuard, registry=registry)
    _answer_errors_in_json(api)
    lists = ListReader(client)
    api.include_router(storefront_routes(client, lists))
    api.include_router(event_routes(settings, intake, registry))
    api.include_router(dashboard_routes(client, Dashboard(settings, client, WINDOW_STEP_SECONDS), lists))
    api.include_router(operations_routes(HealthCheck(settings, client), registry))
    # The trainer's reports (EDA, evaluation, segment plots); StaticFiles refuses paths outside the folder.
    api.mount("/reports", Reports(directory=settings.report_dir, check_dir=False), name="reports")
    return api


def _answer_errors_in_json(api: FastAPI) -> None:
    @api.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError):
        # Name the parameter and the rule; never repeat what was sent.
        problems = []
        for problem in exc.errors():
            name = ".".join(str(part) for part in problem["loc"][1:]) or str(problem["loc"][0])
            rule = f"must be {ID_RULE}" if problem["type"] == "string_pattern_mismatch" else problem["msg"]
            problems.append(f"{name}: {rule}")
        return error(422, "; ".join(problems))

    @api.exception_handler(RedisConnectionError)
    @api.exception_handler(RedisTimeoutError)
    async def store_unavailable(request: Request, exc: Exception):
        # A dropped connection was already retried once (see async_redis_client): Redis is down.
        return error(503, "the recommendation store is unavailable; retry shortly", {"Retry-After": "1"})

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, "no such route" if exc.status_code == 404 else str(exc.detail))
