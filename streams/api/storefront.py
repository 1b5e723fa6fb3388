"""The storefront's routes: each customer's lists, similar items, segments and popular items,
read from Redis as the workers and the trainer keep them."""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Query

from models.explanations import PRODUCT_EVIDENCE, UNKNOWN, Reason, describe, products_to_name
from streams import redis_keys
from streams.api.schemas import (ERRORS, K, ExplainedRecommendations, Exclude, Explain, ItemId, PopularItems, Segment,
                                 SimilarItems, UserId, error, json_bytes)
from streams.recommendation_store import as_served, decode_list, product_title


class ListReader:
    """A customer's list as the API answers it: cut to ``k``, without the excluded items, with
    each item's reason in words where asked."""

    def __init__(self, client):
        self.client = client

    async def answer(self, key: str, user_id: str, k: int, fallback_key: str | None, exclude: str = "",
                     explain: bool = False) -> dict | None:
        """The list at ``key`` (else the one at ``fallback_key``, marked ``fallback``); None without either."""
        raw = await self.client.get(key)
        fallback = await self.client.get(fallback_key) if raw is None and fallback_key else None
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
            answer["explanations"] = await self.explanations(listing.items, reasons)
        return answer

    async def explanations(self, items: list[str], reasons: list[Reason]) -> list[dict]:
        """Each item with its reason; products are named by their catalog titles (else their ids)."""
        reasons = reasons or [UNKNOWN] * len(items)
        named = products_to_name(items, reasons)
        records = await self.client.mget([redis_keys.product(item) for item in named]) if named else []
        titles = {item: product_title(record) or item for item, record in zip(named, records)}
        return [{"item_id": item, "title": titles[item], "reason": reason.code, "evidence": reason.evidence,
                 "evidence_title": titles.get(reason.evidence) if reason.code in PRODUCT_EVIDENCE else None,
                 "text": describe(reason, titles.get)} for item, reason in zip(items, reasons)]


def storefront_routes(client, lists: ListReader) -> APIRouter:
    routes = APIRouter(tags=["storefront"])

    async def serve_list(key: str, user_id: str, k: int, fallback_key: str | None, exclude: str, explain: bool):
        answer = await lists.answer(key, user_id, k, fallback_key, exclude, explain)
        if answer is None:
            return error(404, "no list for this customer" + (" and no popular list" if fallback_key else ""))
        return json_bytes(msgspec.json.encode(answer))

    @routes.get("/recs/{user_id}", response_model=ExplainedRecommendations, responses=ERRORS)
    async def recommendations(user_id: UserId, k: K = 10, exclude: Exclude = "", explain: Explain = False):
        """The customer's blended list, best first; customers without one get the popular list, marked ``fallback``."""
        return await serve_list(redis_keys.recs(user_id), user_id, k, redis_keys.POPULAR, exclude, explain)

    @routes.get("/recs/{user_id}/buy-again", response_model=ExplainedRecommendations, responses=ERRORS)
    async def buy_again(user_id: UserId, k: K = 10, exclude: Exclude = "", explain: Explain = False):
        """Items the customer bought before, most likely to be bought again first; 404 for a customer with none."""
        return await serve_list(redis_keys.buy_again(user_id), user_id, k, None, exclude, explain)

    @routes.get("/recs/{user_id}/discover", response_model=ExplainedRecommendations, responses=ERRORS)
    async def discover(user_id: UserId, k: K = 10, exclude: Exclude = "", explain: Explain = False):
        """Items the customer never bought, best first; customers without a list get the popular list."""
        return await serve_list(redis_keys.discover(user_id), user_id, k, redis_keys.POPULAR, exclude, explain)

    @routes.get("/similar/{item_id}", response_model=SimilarItems, responses=ERRORS)
    async def similar(item_id: ItemId, k: K = 10):
        """Items like this one (co-bought first, then alike descriptions), from the latest trained model."""
        raw = await client.get(redis_keys.similar(item_id))
        if raw is None:
            return error(404, "no similar items for this product")
        similar = msgspec.json.decode(raw)
        return {"item_id": item_id, "items": similar["items"][:k], "scores": similar["scores"][:k]}

    @routes.get("/segments/{user_id}", response_model=Segment, responses=ERRORS)
    async def segment(user_id: UserId):
        """The customer's segment: online (after a purchase the worker saw) or from the latest training."""
        raw = await client.hget(redis_keys.segment_bucket(user_id), user_id)
        if raw is None:
            return error(404, "no segment for this customer")
        return {"user_id": user_id, "segment": raw.decode()}

    @routes.get("/popular", response_model=PopularItems, responses=ERRORS)
    async def popular(segment: Annotated[str | None, Query(max_length=128, description="A segment name.")] = None,
                      k: K = 10):
        """Popular items, overall or within one segment."""
        raw = await client.get(redis_keys.segment_popular(segment) if segment else redis_keys.POPULAR)
        if raw is None:
            return error(404, "no popular list for this segment" if segment else "no popular list yet")
        listing = decode_list(raw)
        return {"segment": segment, "items": listing.items[:k], "scores": listing.scores[:k],
                "model_version": listing.model_version}

    return routes
