"""Product records: the model learns each item's category and price, and Redis keeps the record
for the other workers and the API."""

from __future__ import annotations

import logging

from streams.event_archive import EventArchive
from streams.events import encode_event
from streams.pipeline.batch import BatchState, ServingModel
from streams.pipeline.catalog import Catalog

log = logging.getLogger(__name__)


class LearnProducts:
    def __init__(self, model: ServingModel, catalog: Catalog, archive: EventArchive | None):
        self.model = model
        self.catalog = catalog
        self.archive = archive

    def __call__(self, batch: BatchState) -> None:
        for message, record, _ in batch.valid:
            try:
                for recommender in self.model.recommenders:
                    recommender.learn_item(record.item_id, record.category, record.price)
                if self.archive is not None:
                    self.archive.add(record)
            except Exception as exc:  # one record's failure is that record's
                log.exception("product at %s[%d]@%d failed", message.topic, message.partition, message.offset)
                batch.refuse(message, f"processing failed: {type(exc).__name__}: {exc}")
                continue
            batch.effects_of(message).counters[f"valid:{message.topic}"] += 1
            self.catalog.known(record.item_id)
            batch.products.append((record.item_id, encode_event(record)))
