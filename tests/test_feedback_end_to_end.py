"""Feedback and online metrics from a running worker: rec-feedback topic and /metrics."""

import time
import urllib.request

import msgspec
import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.events import ClickEvent, FeedbackEvent, OrderLine, PurchaseEvent, encode_event
from streams.local_stack import stop_pid
from streams.recommendation_store import read_recommendations
from streams.topic_admin import ensure_topics
from streams.worker import spawn_worker

pytestmark = pytest.mark.integration


def wait_for_list(client, user, not_rec_id=None, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = read_recommendations(client, user)
        if listing is not None and not listing.fallback and listing.rec_id != not_rec_id:
            return listing
        time.sleep(0.2)
    raise AssertionError(f"no new list for {user}")


def metrics_page(settings) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_web_port}/metrics", timeout=10).read().decode()


def wait_for_metric(settings, line: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    page = ""
    while time.monotonic() < deadline:
        page = metrics_page(settings)
        if line in page.splitlines():
            return page
        time.sleep(0.5)
    raise AssertionError(f"{line!r} not on /metrics:\n" + "\n".join(l for l in page.splitlines() if "window" in l))


def parse_gauges(page: str) -> dict[str, float]:
    return {name: float(value) for name, _, value in (line.rpartition(" ") for line in page.splitlines())
            if name and not name.startswith("#")}


def test_actions_on_served_items_reach_rec_feedback_and_metrics(stack_settings, redis_client, tmp_path):
    settings = stack_settings
    ensure_topics(settings)
    worker = spawn_worker(settings, tmp_path / "worker.log")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)

    def send(topic, event):
        producer.send(topic, key=event.user_id.encode(), value=encode_event(event))
        producer.flush()

    try:
        now = time.time() - 100
        # Other shoppers give the model something to recommend.
        for n in range(5):
            send(settings.topic_purchases, PurchaseEvent(f"w{n}", f"other{n}", f"wo{n}",
                                                          [OrderLine(i, 1, 1.0) for i in ("A", "B", "C", "D")], now))
        send(settings.topic_clicks, ClickEvent("c1", "u1", "A", "view", now + 1))
        first = wait_for_list(redis_client, "u1")
        clicked = first.items[0]
        send(settings.topic_clicks, ClickEvent("c2", "u1", clicked, "add_to_cart", now + 2, rec_id=first.rec_id))
        second = wait_for_list(redis_client, "u1", not_rec_id=first.rec_id)
        bought = second.items[1]
        send(settings.topic_purchases, PurchaseEvent("p1", "u1", "o1", [OrderLine(bought, 2, 1.0)], now + 3))

        consumer = KafkaConsumer(settings.topic_feedback, bootstrap_servers=settings.kafka_bootstrap_servers,
                                 auto_offset_reset="earliest", consumer_timeout_ms=20000, group_id=None)
        feedback = []
        for record in consumer:
            feedback.append(msgspec.json.decode(record.value, type=FeedbackEvent))
            if any(f.action == "purchase" for f in feedback):
                break
        consumer.close()
        by_action = {f.action: f for f in feedback}
        cart = by_action["add_to_cart"]
        assert (cart.item_id, cart.rank, cart.rec_id, cart.attribution) == (clicked, 1, first.rec_id, "explicit")
        purchase = by_action["purchase"]
        assert (purchase.item_id, purchase.rank, purchase.rec_id, purchase.attribution) == (bought, 2, second.rec_id, "implicit")
        assert purchase.model_version == second.model_version and purchase.latency_seconds == pytest.approx(1.0)

        page = metrics_page(settings)
        assert 'recsys_feedback_total{action="purchase"' in page
        assert f'recsys_events_total{{outcome="valid",topic="{settings.topic_clicks}"}} 2.0' in page
        assert "recsys_list_freshness_seconds_bucket" in page

        # The windowed Faust table sums the same story: before its purchase u1 had no segment,
        # and its one purchase hit the list it was served.
        scope = f'{{model_version="{second.model_version}",segment=""}}'
        page = wait_for_metric(settings, f"recsys_window_purchase_hit_rate_ratio{scope} 1.0")
        gauges = parse_gauges(page)
        assert gauges[f"recsys_window_lists{scope}"] == 2.0  # after the view and after the cart
        assert gauges[f"recsys_window_click_through_ratio{scope}"] == 0.0  # the view came before any list
        assert 1.0 <= gauges["recsys_window_seconds"] <= 60.0
        assert gauges["recsys_window_events_per_second"] == pytest.approx(8 / gauges["recsys_window_seconds"])
        assert 0 < gauges['recsys_window_freshness_p50_seconds'] <= 30.0
    finally:
        producer.close()
        worker.terminate()
        worker.wait(timeout=20)
        stop_pid(worker.pid)
