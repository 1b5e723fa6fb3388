"""Experiments end to end: `recsys experiment` on a running worker, simulated shoppers who click
what they like on the list their arm wrote, and the report's verdict. A planted better arm must
win significantly; an A/A experiment must find no winner."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from kafka import KafkaProducer

from offline.release import train_and_publish
from offline.simulator import simulate_history
from streams import redis_keys
from streams.events import ClickEvent, OrderLine, PurchaseEvent, encode_event, event_key
from streams.experiment_report import arm_results, winners
from streams.experiments import Arm, Experiment, ExperimentError, parse_arm, read_experiment, read_outcomes
from streams.recommendation_store import decode_list
from streams.settings import settings_env
from streams.topic_admin import ensure_topics
from tests.conftest import running_worker, wait_for_arm_lists
from tests.test_events_route import read_topic
from tests.test_feedback_end_to_end import metrics_page

SHOWN = 10  # what a storefront shows of a list


def test_arms_parse_and_assignment_is_sticky_and_follows_the_weights():
    arm = parse_arm("B=20261201T101500Z-abc,RERANK_SESSION_WEIGHT=0.6:25")
    assert arm == Arm("B", "20261201T101500Z-abc", {"rerank_session_weight": 0.6}, 25.0)
    for bad in ("B", "B=latest", "B=latest:zero", "B=latest:0", "B=latest,MAX_QUANTITY=3:50", "b c=latest:5"):
        with pytest.raises(ExperimentError):
            parse_arm(bad)
    experiment = Experiment("e1", [Arm("A", weight=75), Arm("B", weight=25)], 0.0)
    users = [f"u{n}" for n in range(20_000)]
    assigned = [experiment.arm_of(user).name for user in users]
    assert assigned == [experiment.arm_of(user).name for user in users]  # sticky
    assert 0.73 < assigned.count("A") / len(users) < 0.77
    other = Experiment("e2", experiment.arms, 0.0)  # another experiment splits customers afresh
    assert 0.5 < np.mean([a == other.arm_of(u).name for a, u in zip(assigned, users)]) < 0.7


def test_the_report_tests_each_arm_against_the_first_with_scipy():
    experiment = Experiment("e", [Arm("A"), Arm("B")], 0.0)
    users = [f"u{n}" for n in range(2000)]
    arm = {user: experiment.arm_of(user).name for user in users}
    rng = np.random.default_rng(0)
    outcomes = {"lists": {u: 10 for u in users},
                "clicked": {u: int(rng.binomial(10, 0.5 if arm[u] == "B" else 0.3)) for u in users},
                "purchases": {u: 2 for u in users}, "hits": {u: int(rng.binomial(2, 0.4)) for u in users},
                "revenue": {u: float(rng.gamma(2.0, 10.0)) for u in users}}
    results = arm_results(experiment, outcomes)
    assert [r.arm for r in results] == ["A", "B"] and sum(r.customers for r in results) == 2000
    b = results[1]
    assert b.click_through.low < b.click_through.value < b.click_through.high
    assert b.click_through.p_value < 1e-6 and abs(b.click_through.value - 0.5) < 0.03
    assert winners(results)["click_through"] == "B"
    assert winners(results)["hit_rate"] is None and winners(results)["revenue_per_customer"] is None



def recsys(settings, *args, expect: int = 0) -> str:
    done = subprocess.run([sys.executable, "-m", "offline.cli", *args], env={**os.environ, **settings_env(settings)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == expect, done.stderr
    return done.stdout + done.stderr


class Shoppers:
    """Each customer likes what they bought in the history: they view the liked items their list
    shows (naming its rec_id), and buy the first one."""

    def __init__(self, settings, client, history):
        self.settings, self.client = settings, client
        self.liked = history.groupby("user_id")["item_id"].agg(set).to_dict()
        self.price = history.groupby("item_id")["price"].median().to_dict()
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        self.sent = 0

    def send(self, topic, event):
        self.producer.send(topic, key=event_key(event), value=encode_event(event))
        self.sent += 1

    def wait_for_arms(self, round_name: str) -> None:
        self.sent += wait_for_arm_lists(self.producer, self.settings, self.client, round_name)

    def visit(self, round_name: str) -> None:
        """Every customer opens the shop (a view), reads the list it gets, then acts on it."""
        self.wait_for_arms(round_name)
        start = time.time() - 30
        for n, user in enumerate(self.liked):
            item = sorted(self.liked[user])[0]
            self.send(self.settings.topic_clicks, ClickEvent(f"{round_name}-open-{n}", user, item, "view", start))
        self.producer.flush()
        lists = self.wait_for_lists(start, lambda listing: listing.arm is not None)
        for n, (user, listing) in enumerate(lists.items()):
            shown = [item for item in listing.items[:SHOWN] if item in self.liked[user]]
            for m, item in enumerate(shown[:3]):
                self.send(self.settings.topic_clicks, ClickEvent(f"{round_name}-v{n}-{m}", user, item, "view",
                                                                 start + 1 + m, rec_id=listing.rec_id))
            bought = shown[0] if shown else sorted(self.liked[user])[-1]
            self.send(self.settings.topic_purchases,
                      PurchaseEvent(f"{round_name}-p{n}", user, f"{round_name}-o{n}",
                                    [OrderLine(bought, 1, float(self.price[bought]))], start + 5,
                                    rec_id=listing.rec_id))
        self.producer.flush()
        self.wait_for_lists(start + 5, lambda listing: True)

    def wait_for_lists(self, since: float, ready, timeout: float = 120.0, only=None) -> dict:
        users = list(self.liked if only is None else only)
        deadline, lists = time.monotonic() + timeout, {}
        while time.monotonic() < deadline and len(lists) < len(users):
            for user in users:
                raw = self.client.get(redis_keys.recs(user))
                listing = decode_list(raw, user) if raw else None
                if listing is not None and (listing.event_ts or 0) >= since and ready(listing):
                    lists[user] = listing
            time.sleep(0.3)
        assert len(lists) == len(users), f"{len(lists)} of {len(users)} customers got their list"
        return lists


def shuffled(history, seed=3):
    """The same shop with every item's identity scrambled: a model of it recommends at random."""
    items = history["item_id"].unique()
    mapping = dict(zip(items, np.random.default_rng(seed).permutation(items)))
    return history.assign(item_id=history["item_id"].map(mapping))


@pytest.mark.integration
def test_a_planted_better_arm_wins_significantly_and_an_aa_test_finds_no_winner(stack_settings, redis_client,
                                                                                  tmp_path):
    settings = stack_settings
    ensure_topics(settings)
    history = simulate_history(n_users=200, seed=21)
    poor = train_and_publish(settings, shuffled(history), None, "simulator", publish=False,
                             step=lambda m: None).version
    good = train_and_publish(settings, history, None, "simulator", publish=True, step=lambda m: None).version
    shoppers = Shoppers(settings, redis_client, history)
    with running_worker(settings, tmp_path / "worker.log"):
        # An arm workers could not load is refused before anything is stored.
        refused = recsys(settings, "experiment", "start", "typo", "--arm", f"good={good}:50",
                         "--arm", "poor=20990101T000000Z-none:50", expect=2)
        assert "cannot read the manifest" in refused and redis_client.get("experiment:current") is None
        recsys(settings, "experiment", "start", "planted", "--arm", f"good={good}:50", "--arm", f"poor={poor}:50")
        shoppers.visit("planted")
        planted = json.loads(recsys(settings, "experiment", "report", "--json"))
        print(recsys(settings, "experiment", "report"))
        arms = {arm["arm"]: arm for arm in planted["arms"]}
        assert arms["good"]["customers"] + arms["poor"]["customers"] == len(shoppers.liked) + 1  # and "warm-up"
        assert min(arms["good"]["customers"], arms["poor"]["customers"]) > 60
        assert planted["winners"]["click_through"] == "good"
        assert arms["poor"]["click_through"]["p_value"] < 0.01
        assert arms["good"]["click_through"]["low"] > arms["poor"]["click_through"]["high"]
        # The arm travels on rec-feedback and into the worker's metrics too.
        feedback = read_topic(settings, settings.topic_feedback, 1)
        shoppers_feedback = [json.loads(r.value) for r in feedback if json.loads(r.value)["user_id"] != "warm-up"]
        assert {item["arm"] for item in shoppers_feedback} == {"good", "poor"}
        clicked = sum(arm["click_through"]["value"] * arm["lists"] for arm in planted["arms"])
        page = metrics_page(settings)
        exported = sum(float(line.rpartition(" ")[2]) for line in page.splitlines()
                       if line.startswith('recsys_experiment_outcomes_total{') and 'experiment="planted"' in line
                       and 'outcome="clicked"' in line)
        assert exported == pytest.approx(clicked)

        recsys(settings, "experiment", "stop")
        again = recsys(settings, "experiment", "start", "planted", "--arm", f"A={good}:50", "--arm", f"B={good}:50",
                       expect=2)
        assert "ran before" in again  # its outcomes would mix
        recsys(settings, "experiment", "start", "same", "--arm", f"A={good}:50", "--arm", f"B={good}:50")
        shoppers.wait_for_arms("same-before")
        # A purchase after a list of the previous experiment is not this experiment's outcome.
        early = sorted(shoppers.liked)[0]
        bought = sorted(shoppers.liked[early])[0]
        bought_at = time.time() - 40
        shoppers.send(settings.topic_purchases, PurchaseEvent("same-early", early, "same-early-order",
                                                              [OrderLine(bought, 1, 1.0)], bought_at))
        shoppers.producer.flush()
        shoppers.wait_for_lists(bought_at, lambda listing: listing.arm in {"A", "B"}, only=[early])
        assert read_outcomes(redis_client, read_experiment(redis_client))["purchases"].get(early, 0) == 0
        shoppers.visit("same")
        same = json.loads(recsys(settings, "experiment", "report", "--json"))
        print(recsys(settings, "experiment", "report"))
        assert same["winners"] == {"click_through": None, "hit_rate": None, "revenue_per_customer": None}
        assert all(arm["lists"] >= arm["customers"] > 60 for arm in same["arms"])
