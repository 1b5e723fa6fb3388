"""A small Python client of the storefront API: send events, read lists and similar items.

>>> from streams.client import RecsysClient
>>> shop = RecsysClient("http://127.0.0.1:8000", api_key="...")        # doctest: +SKIP
>>> shop.send_events([{"event_id": "e1", "user_id": "17850", "item_id": "85123A",
...                    "type": "view", "ts": 1733140800.0}])            # doctest: +SKIP
{'accepted': 1, 'refused': 0, 'refusals': []}
>>> shop.recommendations("17850", k=5)["items"]                        # doctest: +SKIP

Requests that fail for a passing reason (a refused connection, a timeout, a 503 while Kafka or
Redis is away, a 429) are retried with growing pauses; any other error raises at once.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import httpx2 as httpx
import msgspec

from streams.api.event_intake import MAX_EVENTS_PER_REQUEST

RETRIED_STATUSES = frozenset({429, 502, 503, 504})


class RecsysError(RuntimeError):
    """The API answered with an error; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


class RecsysClient:
    def __init__(self, base_url: str, api_key: str = "", timeout_seconds: float = 5.0, retries: int = 3,
                 backoff_seconds: float = 0.2):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_seconds)
        self.retries = retries
        self.backoff_seconds = backoff_seconds

    def send_events(self, events: Iterable[Any]) -> dict:
        """Send clicks, purchases and catalog records (dicts or the contract's structs), in requests
        of at most the route's limit. Returns the summed ``accepted``, ``refused`` and
        ``refusals`` (each with its index in ``events``)."""
        events = list(events)
        total = {"accepted": 0, "refused": 0, "refusals": []}
        for start in range(0, len(events), MAX_EVENTS_PER_REQUEST):
            chunk = events[start:start + MAX_EVENTS_PER_REQUEST]
            answer = self._request("POST", "/events", content=_encode_events(chunk),
                                   headers={"Content-Type": "application/json"})
            total["accepted"] += answer["accepted"]
            total["refused"] += answer["refused"]
            total["refusals"] += [{**refusal, "index": refusal["index"] + start} for refusal in answer["refusals"]]
        return total

    def recommendations(self, user_id: str, k: int = 10, slot: str = "", explain: bool = False,
                        exclude: Sequence[str] = ()) -> dict:
        """The customer's list (``slot``: ``buy-again`` or ``discover`` for the other slots)."""
        params: dict = {"k": k}
        if explain:
            params["explain"] = "true"
        if exclude:
            params["exclude"] = ",".join(exclude)
        path = f"/recs/{quote(user_id, safe='')}" + (f"/{slot}" if slot else "")
        return self._request("GET", path, params=params)

    def similar(self, item_id: str, k: int = 10) -> dict:
        return self._request("GET", f"/similar/{quote(item_id, safe='')}", params={"k": k})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RecsysClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, **options) -> dict:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, **options)
            except httpx.TransportError:
                if last:
                    raise
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRIED_STATUSES or last:
                    raise RecsysError(response.status_code, _message(response))
            time.sleep(self.backoff_seconds * 2 ** attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")


_encoder = msgspec.json.Encoder()


def _encode_events(events: list) -> bytes:
    # The contract leaves unset fields out (streams.events.encode_event).
    return _encoder.encode([{k: v for k, v in msgspec.to_builtins(event).items() if v is not None}
                            if isinstance(event, msgspec.Struct) else event for event in events])


def _message(response) -> str:
    try:
        return str(response.json().get("error", response.text))[:300]
    except ValueError:
        return response.text[:300]
