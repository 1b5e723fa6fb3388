"""`recsys demo`: the whole product on one machine, on real data, in a few minutes.

A private stack (Tansu + Redis on free loopback ports) and a worker process
are started, a slice of history is replayed as platform events, a few bad
events show the dead-letter topic at work, and real customers' purchases are
printed beside what Redis now recommends. Everything started is stopped.
"""

from __future__ import annotations

import time

import redis
from kafka import KafkaConsumer, KafkaProducer
from rich.console import Console
from rich.table import Table

from offline.private_stack import private_stack, wait_until_processed
from offline.replay import event_topics
from streams.connections import kafka_options, redis_client
from streams.dead_letters import REASON, SOURCE_TOPIC, read_headers
from streams.settings import redact_url
from streams.recommendation_store import read_event_stats, read_recommendations
from streams.settings import Settings

MAX_DEAD_LETTERS_SHOWN = 10
BAD_EVENTS = [
    ("clicks", b'{"event_id": "bad-1", "user_id": "12345", "item_id": "85123A", "type": "view", '),
    ("clicks", b'{"event_id": "bad-2", "user_id": "12345", "item_id": "85123A", "type": "wishlist", "ts": 1300000000}'),
    ("purchases", b'{"event_id": "bad-3", "user_id": "12345", "order_id": "X1", "ts": 4102444800, '
                  b'"lines": [{"item_id": "85123A", "quantity": 2, "unit_price": 2.55}]}'),
]


def run_demo(n_orders: int, n_customers: int, console: Console) -> None:
    # Imported here: the CLI module imports this one lazily.
    from offline.cli import publish_history

    started = time.monotonic()
    with private_stack("demo") as stack:
        settings = stack.settings
        console.print(f"stack: Tansu at {settings.kafka_bootstrap_servers}, Redis at {redact_url(settings.redis_url)}")
        worker = stack.start_worker()
        console.print(f"worker: pid {worker.pid}, log {stack.workdir / 'worker.log'} (removed at the end, kept if "
                      "the demo fails)")

        stats, orders = publish_history(settings, "auto", limit=n_orders)
        sent = sum(stats.sent.values())
        console.print(f"replay: {sent:,} events ({stats.orders:,} orders, {len(stats.users):,} customers) "
                      f"in {stats.seconds:.1f} s")
        send_bad_events(settings)
        client = redis_client(settings)
        seen = wait_until_processed(client, sent + len(BAD_EVENTS), worker, timeout=120)
        counters = read_event_stats(client)
        console.print(f"worker: accounted for {seen:,} of {sent + len(BAD_EVENTS):,} events: "
                      + ", ".join(f"{k}={v:,}" for k, v in sorted(counters.items())))
        show_dead_letters(settings, console)
        show_customers(client, orders, n_customers, console)
        console.print(f"demo finished in {time.monotonic() - started:.0f} s")


def send_bad_events(settings: Settings) -> None:
    producer = KafkaProducer(**kafka_options(settings))
    topics = event_topics(settings)
    for kind, payload in BAD_EVENTS:
        producer.send(topics[kind], key=b"12345", value=payload)
    producer.flush()
    producer.close()


def show_dead_letters(settings: Settings, console: Console) -> None:
    consumer = KafkaConsumer(settings.topic_dead_letters, **kafka_options(settings),
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, group_id=None)
    table = Table("source topic", "reason", "original bytes", title="dead-letter topic")
    total = 0
    for record in consumer:
        total += 1
        if total <= MAX_DEAD_LETTERS_SHOWN:
            headers = read_headers(record.headers)
            table.add_row(headers.get(SOURCE_TOPIC, "?"), headers.get(REASON, "?"),
                          record.value[:60].decode("utf-8", "replace"))
    consumer.close()
    table.caption = f"{total} dead letters in all"
    console.print(table)


def show_customers(client: redis.Redis, orders, n_customers: int, console: Console) -> None:
    described = orders.dropna(subset=["description"])
    titles = described[described["description"].str.strip() != ""].groupby("item_id")["description"].first()
    busiest = orders.groupby("user_id")["order_id"].nunique().sort_values(ascending=False).head(n_customers)
    for user_id, n_orders in busiest.items():
        bought = orders[orders["user_id"] == user_id]["item_id"].value_counts().head(5)
        listing = read_recommendations(client, user_id)
        table = Table("bought (times)", "recommended now", title=f"customer {user_id}: {n_orders} orders replayed, "
                      f"rec_id {listing.rec_id if listing else '-'}")
        recommended = listing.items[:8] if listing else []
        left = [f"{titles.get(item, item)} ({count})" for item, count in bought.items()]
        right = [f"{titles.get(item, item)}" for item in recommended]
        for row in range(max(len(left), len(right))):
            table.add_row(left[row] if row < len(left) else "", right[row] if row < len(right) else "")
        console.print(table)
