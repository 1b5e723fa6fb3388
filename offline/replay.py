"""Platform replay: publishes a purchase history to Kafka as the shop would, in time order.

Each order becomes a purchase event, preceded by *derived* clicks (a view,
then an add_to_cart, for each line) because the history records only what
was bought. Derived clicks carry event ids ``{order_id}-view-{n}`` and
``{order_id}-cart-{n}`` and are spaced ``CLICK_SPACING_SECONDS`` apart before
the order's time. Catalog records go out first, on the products topic.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pandas as pd
from kafka import KafkaProducer

from streams.connections import kafka_options
from streams.events import ClickEvent, OrderLine, ProductRecord, PurchaseEvent, encode_event, event_key
from streams.settings import Settings

CLICK_SPACING_SECONDS = 2.0


@dataclass
class ReplayStats:
    sent: Counter = field(default_factory=Counter)
    users: set = field(default_factory=set)
    orders: int = 0
    seconds: float = 0.0


def select_orders(orders: pd.DataFrame, limit: int | None = None, start: str | None = None) -> pd.DataFrame:
    """Order lines from ``start`` on, cut after the first ``limit`` whole orders."""
    if start:
        orders = orders[orders["timestamp"] >= pd.Timestamp(start)]
    if limit is not None:
        first = orders["order_id"].drop_duplicates().iloc[:limit]
        orders = orders[orders["order_id"].isin(first)]
    return orders


def catalog_records(orders: pd.DataFrame) -> list[ProductRecord]:
    """One record per item: its most common description and its median price."""
    grouped = orders.groupby("item_id", sort=True)
    titles = grouped["description"].agg(lambda s: s.mode().iat[0] if not s.mode().empty else "")
    prices = grouped["price"].median()
    return [
        ProductRecord(item_id=item, title=title or item, price=round(float(prices[item]), 2))
        for item, title in titles.items()
    ]


def event_topics(settings: Settings) -> dict[str, str]:
    """The topic for each kind ``platform_events`` yields."""
    return {"clicks": settings.topic_clicks, "purchases": settings.topic_purchases}


def platform_events(orders: pd.DataFrame) -> list[tuple[str, ClickEvent | PurchaseEvent]]:
    """(kind, event) pairs in time order; kind is ``clicks`` or ``purchases``."""
    events: list[tuple[float, int, str, ClickEvent | PurchaseEvent]] = []
    seq = 0
    frame = orders.assign(ts=(orders["timestamp"] - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1))
    for order_id, lines in frame.groupby("order_id", sort=False):
        user = str(lines["user_id"].iat[0])
        ts = float(lines["ts"].iat[0])
        items = lines["item_id"].tolist()
        n = len(items)
        for i, item in enumerate(items):
            for action, slot, tag in (("view", 2 * n - i, "view"), ("add_to_cart", n - i, "cart")):
                click_ts = ts - CLICK_SPACING_SECONDS * slot
                events.append((click_ts, seq, "clicks", ClickEvent(
                    event_id=f"{order_id}-{tag}-{i}", user_id=user, item_id=item, type=action, ts=click_ts)))
                seq += 1
        purchase = PurchaseEvent(
            event_id=str(order_id), user_id=user, order_id=str(order_id), ts=ts,
            lines=[OrderLine(item, int(q), float(p)) for item, q, p in
                   zip(items, lines["quantity"].tolist(), lines["price"].tolist())],
            country=str(lines["country"].iat[0]) or None,
        )
        events.append((ts, seq, "purchases", purchase))
        seq += 1
    events.sort(key=lambda e: (e[0], e[1]))
    return [(kind, event) for _, _, kind, event in events]


def iter_paced(events, speed: float, clock=time.monotonic, sleep=time.sleep) -> Iterator:
    """Yield events no faster than ``speed`` times real time (0 means as fast as possible)."""
    if speed <= 0 or not events:
        yield from events
        return
    first_ts = events[0][1].ts
    started = clock()
    for kind, event in events:
        due = (event.ts - first_ts) / speed - (clock() - started)
        if due > 0:
            sleep(due)
        yield kind, event


def _send(producer: KafkaProducer, topic: str, event, stats: ReplayStats) -> None:
    producer.send(topic, key=event_key(event), value=encode_event(event))
    stats.sent[topic] += 1
    if not isinstance(event, ProductRecord):
        stats.users.add(event.user_id)
        stats.orders += isinstance(event, PurchaseEvent)


def _publish_catalog(producer: KafkaProducer, settings: Settings, orders: pd.DataFrame, stats: ReplayStats) -> None:
    for record in catalog_records(orders):
        _send(producer, settings.topic_products, record, stats)


def make_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        **kafka_options(settings),
        client_id="platform-replay",
        linger_ms=20,
        batch_size=512 * 1024,
        acks=1,
        retries=10,
    )


def replay(
    settings: Settings,
    orders: pd.DataFrame,
    speed: float = 0.0,
    on_progress: Callable[[int, int], None] | None = None,
    producer: KafkaProducer | None = None,
) -> ReplayStats:
    """Publish the catalog, then every order's clicks and purchase."""
    stats = ReplayStats()
    started = time.monotonic()
    own_producer = producer is None
    producer = producer or make_producer(settings)
    topics = event_topics(settings)
    try:
        _publish_catalog(producer, settings, orders, stats)
        events = platform_events(orders)
        for n, (kind, event) in enumerate(iter_paced(events, speed), start=1):
            _send(producer, topics[kind], event, stats)
            if on_progress and (n % 1000 == 0 or n == len(events)):
                on_progress(n, len(events))
        producer.flush()
    finally:
        if own_producer:
            producer.close()
    stats.seconds = time.monotonic() - started
    return stats


def replay_visits_in_step(settings: Settings, orders: pd.DataFrame, wait_until: Callable[[int], None],
                          orders_per_step: int = 50) -> ReplayStats:
    """Replay as live traffic looks to a worker that keeps up: for each step of orders, publish
    their clicks, wait until the worker has processed everything sent, then publish the orders.

    A fast bulk replay lets the busy clicks topic lag the purchases topic, so orders would
    reach the worker before the clicks that led to them; ``wait_until(n)`` blocks until the
    worker has accounted for ``n`` events.
    """
    stats = ReplayStats()
    started = time.monotonic()
    producer = make_producer(settings)
    try:
        _publish_catalog(producer, settings, orders, stats)
        order_ids = orders["order_id"].drop_duplicates().tolist()
        for start in range(0, len(order_ids), orders_per_step):
            step = orders[orders["order_id"].isin(order_ids[start:start + orders_per_step])]
            events = platform_events(step)
            for wanted, topic in event_topics(settings).items():  # clicks first, then purchases
                for kind, event in events:
                    if kind == wanted:
                        _send(producer, topic, event, stats)
                producer.flush()
                wait_until(sum(stats.sent.values()))
    finally:
        producer.close()
    stats.seconds = time.monotonic() - started
    return stats
