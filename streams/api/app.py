"""The storefront API and the dashboard's server: FastAPI routes over what Redis holds.

Every input is checked (ids as in the event contract, bounds on ``k``) and
every error is a JSON ``{"error": ...}`` that never repeats the request's input.
The OpenAPI description is served at ``/openapi.json``.
"""

from __future__ import annotations

import gc
import html
import importlib.util
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import msgspec
from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from models.explanations import PRODUCT_EVIDENCE, UNKNOWN, Reason, describe, products_to_name
from streams import redis_keys
from streams.api.dashboard import Dashboard
from streams.api.event_intake import EventIntake, IntakeUnavailable, authorised
from streams.api.guards import RequestGuard
from streams.api.health import HealthCheck
from streams.connections import async_redis_client
from streams.online_summaries import WINDOW_STEP_SECONDS
from streams.recommendation_store import as_served, decode_list, product_title
from streams.settings import Settings
from streams.validation import ID_PATTERN, ID_RULE, InvalidEvent

MAX_K = 100
HERE = Path(__file__).parent
# Found without importing plotly, whose modules would only weigh on the API's memory.
PLOTLY_JS = Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data" / "plotly.min.js"

UserId = Annotated[str, PathParam(pattern=f"^{ID_PATTERN}$", description=f"The customer's id: {ID_RULE}.")]
ItemId = Annotated[str, PathParam(pattern=f"^{ID_PATTERN}$", description=f"The product's id: {ID_RULE}.")]
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"How many items to return (1-{MAX_K}).")]
Explain = Annotated[bool, Query(description="Add each item's reason, its evidence and a sentence for the shopper.")]
Exclude = Annotated[str, Query(max_length=1024, description="Item ids to leave out of this answer, comma-separated; "
                                                            "the list's next items take their places.")]


class Recommendations(BaseModel):
    user_id: str
    items: list[str]
    scores: list[float]
    rec_id: str
    model_version: str
    generated_at: float
    event_ts: float | None = None
    fallback: bool = False
    arm: str | None = None  # the experiment arm that wrote the list


class Explanation(BaseModel):
    item_id: str
    title: str
    reason: str
    evidence: str
    evidence_title: str | None = None
    text: str


class ExplainedRecommendations(Recommendations):
    explanations: list[Explanation] = []


class SimilarItems(BaseModel):
    item_id: str
    items: list[str]
    scores: list[float]


class Segment(BaseModel):
    user_id: str
    segment: str


class PopularItems(BaseModel):
    segment: str | None
    items: list[str]
    scores: list[float]
    model_version: str


class Error(BaseModel):
    error: str


class Refusal(BaseModel):
    index: int
    reason: str


class EventsTaken(BaseModel):
    accepted: int
    refused: int
    refusals: list[Refusal]


ERRORS = {404: {"model": Error}, 422: {"model": Error}}


class Reports(StaticFiles):
    """The trainer's report folder, which may not exist until a first `recsys train` or `report`."""

    async def check_config(self) -> None:
        """Checked on each request instead (``get_response``): the folder may appear later."""

    async def get_response(self, path: str, scope) -> Response:
        if not Path(self.directory).is_dir():
            raise HTTPException(404)
        return await super().get_response(path, scope)


def json_bytes(payload: bytes) -> Response:
    return Response(payload, media_type="application/json")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_api(settings: Settings) -> FastAPI:
    client = async_redis_client(settings)
    registry = CollectorRegistry()
    health = HealthCheck(settings, client)
    dashboard = Dashboard(settings, client, WINDOW_STEP_SECONDS)
    intake = EventIntake(settings)
    events_taken = Counter("recsys_api_events", "Events sent to POST /events, by outcome", ["outcome"],
                           registry=registry)
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
        return JSONResponse({"error": "the recommendation store is unavailable; retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, "no such route" if exc.status_code == 404 else str(exc.detail))

    async def serve_list(key: str, user_id: str, k: int, fallback_key: str | None, exclude: str = "",
                         explain: bool = False):
        answer = await list_answer(key, user_id, k, fallback_key, exclude, explain)
        if answer is None:
            return error(404, "no list for this customer" + (" and no popular list" if fallback_key else ""))
        return json_bytes(msgspec.json.encode(answer))

    async def list_answer(key: str, user_id: str, k: int, fallback_key: str | None, exclude: str = "",
                          explain: bool = False) -> dict | None:
        raw = await client.get(key)
        fallback = await client.get(fallback_key) if raw is None and fallback_key else None
        listing = as_served(user_id, raw, fallback)
        if listing is None:
            return None
        unwanted = set(exclude.split(",")) if exclude else ()
        kept = [n for n, item in enumerate(listing.items) if item not in unwanted][:k]
        reasons = [listing.reasons[n] for n in kept] if listing.reasons else []
        listing.items, listing.scores = [listing.items[n] for n in kept], [listing.scores[n] for n in kept]
        # Every field, defaults included: API callers always see "fallback".
        answer = msgspec.structs.asdict(listing)
        del answer["reasons"]
        if explain:
            answer["explanations"] = await explanations(listing.items, reasons)
        return answer

    async def explanations(items: list[str], reasons: list[Reason]) -> list[dict]:
        """Each item with its reason; products are named by their catalog titles (else their ids)."""
        reasons = reasons or [UNKNOWN] * len(items)
        named = products_to_name(items, reasons)
        records = await client.mget([redis_keys.product(item) for item in named]) if named else []
        titles = {item: product_title(record) or item for item, record in zip(named, records)}
        return [{"item_id": item, "title": titles[item], "reason": reason.code, "evidence": reason.evidence,
                 "evidence_title": titles.get(reason.evidence) if reason.code in PRODUCT_EVIDENCE else None,
                 "text": describe(reason, titles.get)} for item, reason in zip(items, reasons)]

    @api.get("/recs/{user_id}", response_model=ExplainedRecommendations, responses=ERRORS, tags=["storefront"])
    async def recommendations(user_id: UserId, k: K = 10, exclude: Exclude = "", explain: Explain = False):
        """The customer's blended list, best first; customers without one get the popular list, marked ``fallback``."""
        return await serve_list(redis_keys.recs(user_id), user_id, k, redis_keys.POPULAR, exclude, explain)

    @api.get("/recs/{user_id}/buy-again", response_model=ExplainedRecommendations, responses=ERRORS,
             tags=["storefront"])
    async def buy_again(user_id: UserId, k: K = 10, exclude: Exclude = "", explain: Explain = False):
        """Items the customer bought before, most likely to be bought again first; 404 for a customer with none."""
        return await serve_list(redis_keys.buy_again(user_id), user_id, k, None, exclude, explain)

    @api.get("/recs/{user_id}/discover", response_model=ExplainedRecommendations, responses=ERRORS,
             tags=["storefront"])
    async def discover(user_id: UserId, k: K = 10, exclude: Exclude = "", explain: Explain = False):
        """Items the customer never bought, best first; customers without a list get the popular list."""
        return await serve_list(redis_keys.discover(user_id), user_id, k, redis_keys.POPULAR, exclude, explain)

    @api.get("/similar/{item_id}", response_model=SimilarItems, responses=ERRORS, tags=["storefront"])
    async def similar(item_id: ItemId, k: K = 10):
        """Items like this one (co-bought first, then alike descriptions), from the latest trained model."""
        raw = await client.get(redis_keys.similar(item_id))
        if raw is None:
            return error(404, "no similar items for this product")
        similar = msgspec.json.decode(raw)
        return {"item_id": item_id, "items": similar["items"][:k], "scores": similar["scores"][:k]}

    @api.get("/segments/{user_id}", response_model=Segment, responses=ERRORS, tags=["storefront"])
    async def segment(user_id: UserId):
        """The customer's segment: online (after a purchase the worker saw) or from the latest training."""
        raw = await client.hget(redis_keys.segment_bucket(user_id), user_id)
        if raw is None:
            return error(404, "no segment for this customer")
        return {"user_id": user_id, "segment": raw.decode()}

    @api.get("/popular", response_model=PopularItems, responses=ERRORS, tags=["storefront"])
    async def popular(segment: Annotated[str | None, Query(max_length=128, description="A segment name.")] = None,
                      k: K = 10):
        """Popular items, overall or within one segment."""
        raw = await client.get(redis_keys.segment_popular(segment) if segment else redis_keys.POPULAR)
        if raw is None:
            return error(404, "no popular list for this segment" if segment else "no popular list yet")
        listing = decode_list(raw)
        return {"segment": segment, "items": listing.items[:k], "scores": listing.scores[:k],
                "model_version": listing.model_version}

    @api.post("/events", status_code=202, response_model=EventsTaken, tags=["events"],
              responses={401: {"model": Error}, 404: {"model": Error}, 422: {"model": Error},
                         503: {"model": Error}})
    async def events(request: Request):
        """A JSON array of clicks, purchases and catalog records, as in the event contract; the valid
        ones are produced to Kafka, keyed as the contract says, the rest refused with their index and
        reason. Needs the API key (``Authorization: Bearer KEY``); off when none is configured."""
        if not settings.api_key:
            return error(404, "the events route is off: set API_KEY to turn it on")
        if not authorised(settings, request.headers):
            return JSONResponse({"error": "a valid API key is required"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            valid, refused = intake.split(await request.body())
        except InvalidEvent as exc:
            return error(422, str(exc))
        try:
            await intake.produce(valid)
        except IntakeUnavailable as exc:
            return JSONResponse({"error": f"Kafka did not take the events ({exc}); send them again"},
                                status_code=503, headers={"Retry-After": "1"})
        events_taken.labels(outcome="accepted").inc(len(valid))
        events_taken.labels(outcome="refused").inc(len(refused))
        return JSONResponse({"accepted": len(valid), "refused": len(refused), "refusals": refused}, status_code=202)

    @api.get("/customers/{user_id}", tags=["dashboard"])
    async def customer(user_id: UserId):
        """One customer as the dashboard's customer page shows them: their live session (while it
        lasts), segment, and their three lists with each item's reason."""
        session, segment = await client.get(redis_keys.session(user_id)), \
            await client.hget(redis_keys.segment_bucket(user_id), user_id)
        lists = {slot: await list_answer(key(user_id), user_id, MAX_K, fallback, explain=True)
                 for slot, key, fallback in (("recs", redis_keys.recs, redis_keys.POPULAR),
                                             ("buy-again", redis_keys.buy_again, None),
                                             ("discover", redis_keys.discover, redis_keys.POPULAR))}
        return {"user_id": user_id, "segment": segment.decode() if segment else None,
                "session": msgspec.json.decode(session) if session else None, "lists": lists}

    @api.get("/experiment", tags=["dashboard"])
    async def experiment():
        """The running (or last) experiment's report per arm, with 95% intervals and tests; 404 without one."""
        summary = await dashboard.experiment()
        return summary if summary is not None else error(404, "no experiment yet")

    @api.get("/health", tags=["operations"])
    async def health_check():
        """Whether Redis and Kafka answer; 503 when either does not."""
        report = await health.report()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @api.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics():
        """Request counts and latencies, in Prometheus' text format."""
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @api.get("/", include_in_schema=False)
    async def dashboard_page():
        return FileResponse(HERE / "dashboard.html", media_type="text/html")

    @api.get("/dashboard/data", tags=["dashboard"])
    async def dashboard_data():
        """Everything the dashboard draws: the stream's last minute, its timeline, segment sizes,
        the latest offline evaluation and links to the trainer's reports."""
        return await dashboard.data()

    @api.get("/reports/", include_in_schema=False)
    async def report_index():
        links = "".join(f'<li><a href="{html.escape(r["href"])}">{html.escape(r["title"])}</a></li>'
                        for r in dashboard.reports())
        body = f"<ul>{links}</ul>" if links else "<p>No reports yet: <code>recsys train</code> and " \
                                                  "<code>recsys eda</code> write them.</p>"
        return HTMLResponse(f"<!doctype html><title>recsys reports</title><h1>Reports</h1>{body}")

    @api.get("/static/plotly.min.js", include_in_schema=False)
    async def plotly_js():
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    # The trainer's reports (EDA, evaluation, segment plots); StaticFiles refuses paths outside the folder.
    api.mount("/reports", Reports(directory=settings.report_dir, check_dir=False), name="reports")
    return api
