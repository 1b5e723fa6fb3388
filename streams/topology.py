"""The worker's topics and tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import faust

from streams.online_summaries import WINDOW_SECONDS, WINDOW_STEP_SECONDS
from streams.outbox import RAW
from streams.settings import Settings


@dataclass
class Topology:
    user_events: faust.TopicT  # clicks and purchases
    products: faust.TopicT
    summaries: faust.TopicT  # online summaries, keyed by scope
    sessions: faust.Table  # user_id -> session features (msgpack)
    online_window: object  # scope -> summed counts, over a hopping window


def declare(app: faust.App, settings: Settings) -> Topology:
    return Topology(
        user_events=app.topic(settings.topic_clicks, settings.topic_purchases, **RAW),
        products=app.topic(settings.topic_products, **RAW),
        summaries=app.topic(settings.topic_online_metrics, **RAW),
        # Keyed by user_id; use_partitioner makes the changelog partition follow the
        # key (murmur2, as the platform's producer), which batch processing needs.
        sessions=app.Table("session-features", default=None, key_type=bytes, value_type=bytes,
                           use_partitioner=True),
        # Keyed by scope (model version and segment, or the whole stream); values are summed counts.
        online_window=app.Table(
            "online-metrics-window",
            default=dict,  # keys and values go to the changelog as JSON
        ).hopping(WINDOW_SECONDS, WINDOW_STEP_SECONDS, expires=timedelta(minutes=10),
                  key_index=True).relative_to_stream(),
    )
