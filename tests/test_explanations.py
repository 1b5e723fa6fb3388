"""Every reason on every list is true: published lists and the worker's, checked against what the
customer really bought, viewed and put in the cart, their segment and the popular lists."""

import time
from collections import defaultdict

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from offline.release import train_and_publish
from offline.simulator import simulate_history
from streams import redis_keys
from streams.api.app import create_api
from streams.events import ClickEvent, OrderLine, ProductRecord, PurchaseEvent, encode_event, event_key
from streams.model_artifacts import ArtifactStore
from streams.recommendation_store import decode_list
from streams.topic_admin import ensure_topics
from tests.conftest import running_worker
from tests.test_hot_reload import wait_for_version

pytestmark = pytest.mark.integration

SHOPPERS = 30


class Truth:
    """What each customer did: the trained history plus the events sent to the worker."""

    def __init__(self, history, artifact):
        self.bought = defaultdict(set)
        for user, item in zip(history["user_id"], history["item_id"]):
            self.bought[user].add(item)
        self.viewed, self.carted = defaultdict(set), defaultdict(set)
        popular = artifact.json("popular.json")
        self.trending = {item for item, _ in popular["all"] + popular.get("trending", [])}
        self.trending |= {item for entries in popular.get("categories", {}).values() for item, _ in entries}
        self.segment_popular = {name: {item for item, _ in entries} for name, entries in popular["segments"].items()}
        self.offline_segment = dict(artifact.frame("segments.parquet").itertuples(index=False))
        self.finders = {*artifact.manifest["parameters"]["components"], "hybrid", artifact.version}

    def falsehoods(self, user, item, reason, current_segment):
        code, evidence = reason
        checks = {  # each evaluated only for its own code
            "bought_before": lambda: item in self.bought[user] and int(evidence.partition("|")[0] or 1) >= 1,
            "similar_to": lambda: evidence in self.bought[user] | self.viewed[user],
            "bought_with": lambda: evidence in self.carted[user],
            "popular_in_segment": lambda: evidence in {current_segment, self.offline_segment.get(user)}
                                          and item in self.segment_popular.get(evidence, ()),
            "trending": lambda: item in self.trending,
            "discover": lambda: evidence in self.finders,
        }
        return [] if checks[code]() else [(user, item, code, evidence)]


def send_stream(settings, history, truth) -> dict[str, float]:
    """Views, a cart addition and, for every third shopper, a purchase; plus the catalog's titles.
    Returns each shopper's last event time."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    items = list(dict.fromkeys(history["item_id"]))
    titles = history.drop_duplicates("item_id").set_index("item_id")["description"]
    last = {}

    def send(topic, event):
        producer.send(topic, key=event_key(event), value=encode_event(event))
        if hasattr(event, "user_id"):
            last[event.user_id] = max(last.get(event.user_id, 0.0), event.ts)

    for item in items:
        send(settings.topic_products, ProductRecord(item, str(titles[item])))
    now = time.time() - 60
    for n, user in enumerate(history["user_id"].unique()[:SHOPPERS]):
        viewed, carted = items[(7 * n) % len(items)], items[(7 * n + 3) % len(items)]
        send(settings.topic_clicks, ClickEvent(f"v{n}", user, viewed, "view", now + n))
        send(settings.topic_clicks, ClickEvent(f"a{n}", user, carted, "add_to_cart", now + n + 0.5))
        truth.viewed[user] |= {viewed, carted}
        truth.carted[user].add(carted)
        if n % 3 == 0:
            bought = items[(11 * n + 1) % len(items)]
            send(settings.topic_purchases, PurchaseEvent(f"p{n}", user, f"o{n}", [OrderLine(bought, 1, 2.0)],
                                                         now + n + 0.7))
            truth.bought[user].add(bought)
    # Customers the model never saw, one viewing a product it never saw either: popular items fill their lists.
    for n, item in enumerate([items[0], items[1], "a-brand-new-product"]):
        newcomer = f"newcomer{n}"
        send(settings.topic_clicks, ClickEvent(f"new{n}", newcomer, item, "view", now + SHOPPERS + n))
        truth.viewed[newcomer].add(item)
    producer.flush()
    producer.close()
    return last


def wait_for_lists(client, last_event: dict[str, float], timeout: float = 120.0) -> None:
    """Until every shopper's list answers their last event (products come before clicks on their
    partition, so their titles are in too)."""
    deadline = time.monotonic() + timeout
    waiting = dict(last_event)
    while waiting and time.monotonic() < deadline:
        for user, ts in list(waiting.items()):
            raw = client.get(redis_keys.recs(user))
            if raw is not None and (decode_list(raw).event_ts or 0) >= ts:
                del waiting[user]
        time.sleep(0.2)
    assert not waiting, f"no list answers the last event of {sorted(waiting)[:5]}"


def test_every_reason_on_published_and_streamed_lists_is_true(stack_settings, redis_client, tmp_path):
    settings = stack_settings
    ensure_topics(settings)
    history = simulate_history(n_users=150, seed=11)
    version = train_and_publish(settings, history, None, "simulator", publish=True, step=lambda m: None).version
    truth = Truth(history, ArtifactStore(settings.artifact_dir).load(version))
    with running_worker(settings, tmp_path / "worker.log"):
        # The worker loads the version while it starts consuming: the stream waits until it serves it.
        warm_up = history["user_id"].unique()[-1]
        wait_for_version(settings, redis_client, warm_up, history["item_id"].iat[0], version)
        truth.viewed[warm_up].add(history["item_id"].iat[0])
        wait_for_lists(redis_client, send_stream(settings, history, truth))
        streamed = set(truth.viewed) - {warm_up}
        checked, codes, falsehoods = 0, defaultdict(int), []
        for user in [*history["user_id"].unique(), *streamed]:
            segment = (redis_client.hget(redis_keys.segment_bucket(user), user) or b"").decode()
            for key in (redis_keys.recs(user), redis_keys.buy_again(user), redis_keys.discover(user)):
                raw = redis_client.get(key)
                if raw is None:
                    continue
                listing = decode_list(raw, user)
                assert len(listing.reasons or ()) == len(listing.items), key
                if user != warm_up:  # the worker rewrote the lists of the shoppers, and only theirs
                    assert (listing.event_ts is not None) == (user in streamed), key
                for item, reason in zip(listing.items, listing.reasons or ()):
                    falsehoods += truth.falsehoods(user, item, reason, segment)
                    codes[reason.code] += 1
                    checked += 1
        assert falsehoods == [], falsehoods[:10]
        # The stream's context shows in the reasons: cart complements and neighbours of viewed items.
        assert {"bought_before", "similar_to", "bought_with", "trending"} <= set(codes), dict(codes)
        assert checked > 150 * 20
        popular = decode_list(redis_client.get(redis_keys.POPULAR))
        assert {reason.code for reason in popular.reasons} == {"trending"} and set(popular.items) <= truth.trending
        for name, items in truth.segment_popular.items():
            listing = decode_list(redis_client.get(redis_keys.segment_popular(name)))
            assert set(listing.reasons) == {("popular_in_segment", name)} and set(listing.items) <= items

        shopper = next(iter(truth.carted))
        with TestClient(create_api(settings)) as api:
            answer = api.get(f"/recs/{shopper}", params={"explain": "true", "k": 20}).json()
            plain = api.get(f"/recs/{shopper}").json()
        assert "explanations" not in plain
        explained = answer["explanations"]
        assert [e["item_id"] for e in explained] == answer["items"]
        titles = dict(history.drop_duplicates("item_id")[["item_id", "description"]].itertuples(index=False))
        for entry in explained:
            assert entry["title"] == titles[entry["item_id"]] and entry["text"]
            if entry["reason"] in ("similar_to", "bought_with"):
                assert entry["evidence_title"] == titles[entry["evidence"]]
                assert entry["evidence_title"] in entry["text"]
