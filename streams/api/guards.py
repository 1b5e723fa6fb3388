"""ASGI middleware in front of every route: request size limits and Prometheus request metrics.

Written against ASGI directly (not Starlette's BaseHTTPMiddleware), which keeps
its cost per request to a few microseconds.
"""

from __future__ import annotations

import json
import time

from prometheus_client import CollectorRegistry, Counter, Histogram

from streams.api.event_intake import MAX_EVENTS_BODY_BYTES

MAX_URL_BYTES = 2048
MAX_BODY_BYTES = 1024  # every route but POST /events is a GET; anything bigger is refused unread
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class RequestGuard:
    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("recsys_api_requests", "API requests by route and status", ["route", "status"],
                                registry=registry)
        self.latency = Histogram("recsys_api_request_seconds", "API request time by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=registry)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        refusal = _refusal(scope)
        status = {"code": 500}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                # Browsers must take JSON for JSON, even where it contains (validated) ids.
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        try:
            if refusal is not None:
                await _send_error(send_and_note, *refusal)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(route=route, status=str(status["code"])).inc()
            self.latency.labels(route=route).observe(time.perf_counter() - started)


def _body_limit(scope) -> int:
    return MAX_EVENTS_BODY_BYTES if scope["path"] == "/events" and scope["method"] == "POST" else MAX_BODY_BYTES


def _refusal(scope) -> tuple[int, str] | None:
    if len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b"")) > MAX_URL_BYTES:
        return 414, f"the URL is longer than {MAX_URL_BYTES} bytes"
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                return 400, "Content-Length is not a number"
            if size > _body_limit(scope):
                return 413, f"request bodies on this route are limited to {_body_limit(scope)} bytes"
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            return 411, "send the body with a Content-Length, not chunked"
    return None


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
