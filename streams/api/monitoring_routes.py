"""The routes that watch the product rather than serve the storefront: the dashboard and its
data, one customer's page, the experiment's report, the trainer's reports, health and metrics."""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

import msgspec
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException

from streams import redis_keys
from streams.api.dashboard import Dashboard
from streams.api.health import HealthCheck
from streams.api.schemas import MAX_K, UserId, error
from streams.api.storefront import ListReader

HERE = Path(__file__).parent
# Found without importing plotly, whose modules would only weigh on the API's memory.
PLOTLY_JS = Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data" / "plotly.min.js"
# A customer's page shows each slot's list, filled with the popular list where the slot has one.
CUSTOMER_SLOTS = (("recs", redis_keys.recs, redis_keys.POPULAR), ("buy-again", redis_keys.buy_again, None),
                  ("discover", redis_keys.discover, redis_keys.POPULAR))


class Reports(StaticFiles):
    """The trainer's report folder, which may not exist until a first `recsys train` or `report`."""

    async def check_config(self) -> None:
        """Checked on each request instead (``get_response``): the folder may appear later."""

    async def get_response(self, path: str, scope) -> Response:
        if not Path(self.directory).is_dir():
            raise HTTPException(404)
        return await super().get_response(path, scope)


def dashboard_routes(client, dashboard: Dashboard, lists: ListReader) -> APIRouter:
    routes = APIRouter(tags=["dashboard"])

    @routes.get("/customers/{user_id}")
    async def customer(user_id: UserId):
        """One customer as the dashboard's customer page shows them: their live session (while it
        lasts), segment, and their three lists with each item's reason."""
        session = await client.get(redis_keys.session(user_id))
        segment = await client.hget(redis_keys.segment_bucket(user_id), user_id)
        slots = {slot: await lists.answer(key(user_id), user_id, MAX_K, fallback, explain=True)
                 for slot, key, fallback in CUSTOMER_SLOTS}
        return {"user_id": user_id, "segment": segment.decode() if segment else None,
                "session": msgspec.json.decode(session) if session else None, "lists": slots}

    @routes.get("/experiment")
    async def experiment():
        """The running (or last) experiment's report per arm, with 95% intervals and tests; 404 without one."""
        summary = await dashboard.experiment()
        return summary if summary is not None else error(404, "no experiment yet")

    @routes.get("/", include_in_schema=False)
    async def dashboard_page():
        return FileResponse(HERE / "dashboard.html", media_type="text/html")

    @routes.get("/dashboard/data")
    async def dashboard_data():
        """Everything the dashboard draws: the stream's last minute, its timeline, segment sizes,
        the latest offline evaluation and links to the trainer's reports."""
        return await dashboard.data()

    @routes.get("/reports/", include_in_schema=False)
    async def report_index():
        links = "".join(f'<li><a href="{html.escape(r["href"])}">{html.escape(r["title"])}</a></li>'
                        for r in dashboard.reports())
        body = f"<ul>{links}</ul>" if links else "<p>No reports yet: <code>recsys train</code> and " \
                                                  "<code>recsys eda</code> write them.</p>"
        return HTMLResponse(f"<!doctype html><title>recsys reports</title><h1>Reports</h1>{body}")

    @routes.get("/static/plotly.min.js", include_in_schema=False)
    async def plotly_js():
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    return routes


def operations_routes(health: HealthCheck, registry: CollectorRegistry) -> APIRouter:
    routes = APIRouter(tags=["operations"])

    @routes.get("/health")
    async def health_check():
        """Whether Redis and Kafka answer; 503 when either does not."""
        report = await health.report()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @routes.get("/metrics", response_class=Response)
    async def metrics():
        """Request counts and latencies, in Prometheus' text format."""
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return routes
