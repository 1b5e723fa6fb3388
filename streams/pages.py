"""The worker's web pages: Prometheus metrics and a customer's session features."""

from __future__ import annotations

import time

import faust
import msgspec

from streams.event_pipeline import EventPipeline
from streams.online_summaries import window_report
from streams.session_features import load_features
from streams.topology import Topology
from streams.validation import ID_RULE, valid_id


def read_window(topology: Topology) -> dict:
    """The window that ends soonest, i.e. the last 50-60 s, as rates."""
    now = time.time()
    start, _ = topology.online_window.table.window.earliest(now)
    return window_report((value for _, value in topology.online_window.items().now()), seconds=max(now - start, 1.0))


def register_pages(app: faust.App, topology: Topology, pipeline: EventPipeline) -> None:
    pipeline.metrics.export_window(lambda: read_window(topology))
    pipeline.metrics.export_consumer_lag(app.monitor)

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(pipeline.metrics.render(), content_type="text/plain; version=0.0.4")

    @app.page("/sessions/{user_id}")
    async def session_features(web, request, user_id: str):
        """A customer's session features as this worker holds them (its partitions only)."""
        if not valid_id(user_id):
            return web.json({"error": f"user_id must be {ID_RULE}"}, status=422)
        raw = topology.sessions.get(user_id.encode())
        if raw is None:
            return web.json({"error": "no session for this customer on this worker"}, status=404)
        return web.bytes(msgspec.json.encode(load_features(raw)), content_type="application/json")
