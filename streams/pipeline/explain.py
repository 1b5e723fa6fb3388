"""Give each item of each list just made its reason and evidence (``models.explanations``), as the
model that made the list tells them. A list whose reasons cannot be told is served without them."""

from __future__ import annotations

import logging

from streams.online_metrics import OnlineMetrics
from streams.pipeline.batch import BatchState

log = logging.getLogger(__name__)


class Explain:
    def __init__(self, metrics: OnlineMetrics):
        self.metrics = metrics

    def __call__(self, batch: BatchState) -> None:
        for listing, recommender, context, slot in batch.ranked:
            try:
                listing.reasons = recommender.explain(listing.user_id, listing.items, context, slot)
            except Exception:
                log.exception("explaining %s's %s list failed", listing.user_id or "the popular", slot)
                self.metrics.events({"explaining_failed": 1})
