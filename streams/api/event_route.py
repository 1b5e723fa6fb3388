"""``POST /events``: clicks, purchases and catalog records sent over HTTP, produced to Kafka by
``streams.api.event_intake``; off until an API key is configured."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

from streams.api.event_intake import EventIntake, IntakeUnavailable, authorised
from streams.api.schemas import Error, EventsTaken, error
from streams.settings import Settings
from streams.validation import InvalidEvent


def event_routes(settings: Settings, intake: EventIntake, registry: CollectorRegistry) -> APIRouter:
    routes = APIRouter(tags=["events"])
    taken = Counter("recsys_api_events", "Events sent to POST /events, by outcome", ["outcome"], registry=registry)

    @routes.post("/events", status_code=202, response_model=EventsTaken,
                 responses={401: {"model": Error}, 404: {"model": Error}, 422: {"model": Error},
                            503: {"model": Error}})
    async def events(request: Request):
        """A JSON array of clicks, purchases and catalog records, as in the event contract; the valid
        ones are produced to Kafka, keyed as the contract says, the rest refused with their index and
        reason. Needs the API key (``Authorization: Bearer KEY``); off when none is configured."""
        if not settings.api_key:
            return error(404, "the events route is off: set API_KEY to turn it on")
        if not authorised(settings, request.headers):
            return error(401, "a valid API key is required", {"WWW-Authenticate": "Bearer"})
        try:
            valid, refused = intake.split(await request.body())
        except InvalidEvent as exc:
            return error(422, str(exc))
        try:
            await intake.produce(valid)
        except IntakeUnavailable as exc:
            return error(503, f"Kafka did not take the events ({exc}); send them again", {"Retry-After": "1"})
        taken.labels(outcome="accepted").inc(len(valid))
        taken.labels(outcome="refused").inc(len(refused))
        return JSONResponse({"accepted": len(valid), "refused": len(refused), "refusals": refused}, status_code=202)

    return routes
