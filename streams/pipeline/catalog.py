"""The catalog a worker's model knows: records of items it meets in events, read from Redis.

Each worker consumes only its own partitions of the products topic, so a record of an item
another worker consumed is looked up in Redis the first time an event names the item."""

from __future__ import annotations

import math
import time

from streams.pipeline.batch import BatchState, ServingModel
from streams.recommendation_store import RecommendationWriter

# An item missing from the Redis catalog is looked up again after this long (its record may be on its way).
RETRY_SECONDS = 60.0


class Catalog:
    def __init__(self, model: ServingModel, writer: RecommendationWriter):
        self.model = model
        self.writer = writer
        self._lookups: dict[str, float] = {}  # item -> when last missing; inf once known

    def forget(self) -> None:
        """A new model knows nothing yet."""
        self._lookups.clear()

    def known(self, item_id: str) -> None:
        self._lookups[item_id] = math.inf

    async def __call__(self, batch: BatchState) -> None:
        now = time.monotonic()
        items = {item for decoded in batch.valid for item in decoded.items}
        wanted = {item for item in items if now - self._lookups.get(item, -math.inf) > RETRY_SECONDS}
        if not wanted:
            return
        records = await self.writer.read_products(wanted)
        for item in wanted:
            record = records.get(item)
            if record is None:
                self._lookups[item] = now
            else:
                self.known(item)
                for recommender in self.model.recommenders:
                    recommender.learn_item(item, record.category, record.price)
