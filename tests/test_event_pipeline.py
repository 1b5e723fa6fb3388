"""The worker's batch logic, with an in-memory table and a writer that records (pure logic)."""

import asyncio
from collections import Counter

import pytest
from aiokafka import ConsumerRecord

from models.session_blend import PopularityCooccurrenceBlend
from streams.events import ClickEvent, OrderLine, PurchaseEvent, encode_event
from streams.event_pipeline import EventPipeline
from streams.log_positions import Position, missing_ranges
from streams.session_features import load_features
from streams.settings import Settings
from tests.fakes import Msg, RecordingOutbox, RecordingWriter

SETTINGS = Settings(recs_count=5)
NOW = 1_600_000_000.0


def new_pipeline(**kwargs):
    return EventPipeline(SETTINGS, PopularityCooccurrenceBlend(), RecordingWriter(), {}, RecordingOutbox(), "test-v1",
                         **kwargs)


@pytest.fixture
def pipeline():
    p = new_pipeline()
    # Other shoppers make items A..F popular so every list has candidates.
    warmup = [Msg("purchases", encode_event(PurchaseEvent(f"w{n}", f"other{n}", f"wo{n}",
                                                          [OrderLine(i, 1, 1.0) for i in "ABCDEF"], NOW)))
              for n in range(3)]
    asyncio.run(p.handle_user_events(warmup))
    return p


def clicks(*specs):
    return [Msg("clicks", encode_event(ClickEvent(f"e{n}", "u1", item, kind, NOW + ts)))
            for n, (kind, item, ts) in enumerate(specs)]


def test_each_touched_user_gets_a_list_with_ids_and_version(pipeline):
    asyncio.run(pipeline.handle_user_events(clicks(("view", "A", 1))))
    rec = pipeline.writer.lists["u1"]
    assert rec.model_version == "test-v1" and len(rec.rec_id) == 16 and rec.event_ts == NOW + 1
    assert 0 < len(rec.items) <= SETTINGS.recs_count and len(rec.items) == len(rec.scores)
    assert rec.scores == sorted(rec.scores, reverse=True)
    assert pipeline.writer.popular is not None and pipeline.writer.popular.items


def test_cart_items_and_this_sessions_purchases_are_not_recommended(pipeline):
    asyncio.run(pipeline.handle_user_events(clicks(("add_to_cart", "A", 1))))
    assert "A" not in pipeline.writer.lists["u1"].items
    bought = Msg("purchases", encode_event(PurchaseEvent("p1", "u1", "o1", [OrderLine("B", 1, 1.0)], NOW + 2)))
    asyncio.run(pipeline.handle_user_events([bought]))
    assert not {"A", "B"} & set(pipeline.writer.lists["u1"].items)


def test_earlier_purchases_become_eligible_in_a_later_session(pipeline):
    bought = Msg("purchases", encode_event(PurchaseEvent("p1", "u1", "o1", [OrderLine("B", 1, 1.0)], NOW)))
    asyncio.run(pipeline.handle_user_events([bought]))
    assert "B" not in pipeline.writer.lists["u1"].items
    later = SETTINGS.session_gap_seconds + 60
    asyncio.run(pipeline.handle_user_events([Msg("clicks", encode_event(ClickEvent("v9", "u1", "C", "view", NOW + later)))]))
    assert "B" in pipeline.writer.lists["u1"].items


def test_bad_events_go_to_dead_letters_and_valid_ones_in_the_batch_are_kept(pipeline):
    batch = [Msg("clicks", b"{oops"), *clicks(("view", "A", 1), ("view", "C", 2)), Msg("purchases", b'{"event_id": 1}')]
    asyncio.run(pipeline.handle_user_events(batch))
    assert [(topic, value) for topic, _, value in pipeline.outbox.dead] == [("clicks", b"{oops"), ("purchases", b'{"event_id": 1}')]
    assert "malformed JSON" in pipeline.outbox.dead[0][1]
    assert pipeline.writer.counters["valid:clicks"] == 2
    assert pipeline.writer.counters["dead_letter:clicks"] == 1 and pipeline.writer.counters["dead_letter:purchases"] == 1
    features = load_features(pipeline.sessions[b"u1"])
    assert features.recent_items == ["A", "C"] and features.counts == {"view": 2}


def test_a_redelivered_batch_is_counted_once(pipeline):
    batch = clicks(("view", "A", 1), ("add_to_cart", "A", 2))
    before = dict(pipeline.writer.counters)
    asyncio.run(pipeline.handle_user_events(batch))
    asyncio.run(pipeline.handle_user_events(batch))
    assert pipeline.writer.counters == {**before, "valid:clicks": before.get("valid:clicks", 0) + 2}
    assert load_features(pipeline.sessions[b"u1"]).counts == {"view": 1, "add_to_cart": 1}


def test_products_are_stored_and_bad_ones_dead_lettered(pipeline):
    batch = [Msg("products", b'{"item_id": "A", "title": "Lamp", "price": 3.5}'), Msg("products", b'{"item_id": "B"}')]
    asyncio.run(pipeline.handle_products(batch))
    assert pipeline.writer.products == {"A": b'{"item_id":"A","title":"Lamp","price":3.5}'}
    assert pipeline.outbox.dead[0][0] == "products" and "title" in pipeline.outbox.dead[0][1]


def test_a_dropping_hit_rate_requests_one_retrain():
    from models.hit_rate_monitor import HitRateMonitor

    p = new_pipeline(hit_rate_monitor=HitRateMonitor(min_drop=0.3, min_samples=30))
    requests = p.outbox.retrains
    warm = [Msg("purchases", encode_event(PurchaseEvent(f"w{n}", f"o{n}", f"wo{n}", [OrderLine(i, 1, 1.0) for i in "ABCDEF"], NOW)))
            for n in range(3)]
    asyncio.run(p.handle_user_events(warm))

    def shop(n, hit):
        user = f"u{n}"
        asyncio.run(p.handle_user_events([Msg("clicks", encode_event(ClickEvent(f"v{n}", user, "A", "view", NOW + 1)))]))
        item = p.writer.lists[user].items[0] if hit else f"never-listed-{n}"
        asyncio.run(p.handle_user_events([Msg("purchases", encode_event(
            PurchaseEvent(f"p{n}", user, f"o{n}", [OrderLine(item, 1, 1.0)], NOW + 2)))]))

    for n in range(60):
        shop(n, hit=n % 4 != 0)  # 75% of purchases come from the list
    assert requests == []
    for n in range(60, 260):
        shop(n, hit=n % 10 == 0)  # then 10%
    assert len(requests) >= 1
    first = requests[0]
    assert first.model_version == "test-v1" and first.current_hit_rate < 0.7 * first.baseline_hit_rate
    assert first.baseline_hit_rate == pytest.approx(0.75, abs=0.1)
    assert 'recsys_retrain_requests_total' in p.metrics.render().decode()


def test_purchases_update_the_online_segment_named_after_offline_segments(pipeline):
    pipeline.model.offline_segments = {f"big{n}": "high-value frequent" for n in range(40)}
    for n in range(40):
        for k in range(3):
            order = PurchaseEvent(f"b{n}-{k}", f"big{n}", f"bo{n}-{k}", [OrderLine("A", 50, 9.0)] * 5, NOW + k * 86400)
            asyncio.run(pipeline.handle_user_events([Msg("purchases", encode_event(order))]))
    assert pipeline.writer.segments["big0"] == load_features(pipeline.sessions[b"big0"]).segment
    assert pipeline.writer.segments["big39"] == "high-value frequent"
    features = load_features(pipeline.sessions[b"big39"])
    assert features.customer.orders == 3 and features.customer.spend == 3 * 5 * 50 * 9.0


def test_a_jump_in_order_values_raises_a_drift_alert():
    p = new_pipeline()
    alerts = p.outbox.alerts
    for n in range(600):
        price = 2.0 if n < 300 else 80.0
        order = PurchaseEvent(f"p{n}", f"u{n % 50}", f"o{n}", [OrderLine("A", 5, price)], NOW + n)
        asyncio.run(p.handle_user_events([Msg("purchases", encode_event(order))]))
    assert alerts and alerts[0].statistic == "order_value" and alerts[0].now > 2 * alerts[0].before


def test_a_batch_is_processed_in_event_time_order_across_topics(pipeline):
    order = Msg("purchases", encode_event(PurchaseEvent("p1", "u1", "o1", [OrderLine("B", 1, 1.0)], NOW + 3)))
    clicks = [Msg("clicks", encode_event(ClickEvent("c1", "u1", "A", "view", NOW + 1))),
              Msg("clicks", encode_event(ClickEvent("c2", "u1", "B", "add_to_cart", NOW + 2)))]
    asyncio.run(pipeline.handle_user_events([order, *clicks]))  # the order arrived first
    features = load_features(pipeline.sessions[b"u1"])
    assert features.first_item == "A" and features.cart == []  # the purchase emptied the cart after the click


def test_each_batch_sends_summaries_that_add_up_to_what_it_did(pipeline):
    from streams.online_summaries import add_counts, decode_summary, summary_counts, window_report

    pipeline.outbox.summaries.clear()
    asyncio.run(pipeline.handle_user_events(clicks(("view", "A", 1))))
    listed = pipeline.writer.lists["u1"].items[0]
    batch = [Msg("clicks", b"{oops"),
             Msg("clicks", encode_event(ClickEvent("e9", "u1", listed, "view", NOW + 2))),
             Msg("purchases", encode_event(PurchaseEvent("p1", "u1", "o1", [OrderLine(listed, 1, 1.0)], NOW + 3)))]
    asyncio.run(pipeline.handle_user_events(batch))
    totals = {}
    for key, value in pipeline.outbox.summaries:
        totals[key] = add_counts(totals.get(key, {}), summary_counts(decode_summary(value)))
    report = window_report(totals.values(), seconds=1.0)
    assert report["events_per_second"] == 3 and report["dead_letters_per_second"] == 1
    assert report["freshness_p50_seconds"] is not None
    # The purchase gave u1 an online segment: the list written after it counts in that segment.
    segment = load_features(pipeline.sessions[b"u1"]).segment
    by_segment = {scope["segment"]: scope for scope in report["scopes"]}
    assert set(by_segment) == {"", segment} and {s["model_version"] for s in report["scopes"]} == {"test-v1"}
    before = by_segment[""]
    assert (before["lists"], before["views"], before["purchases"], before["purchase_hits"]) == (1, 1, 1, 1)
    assert before["click_through"] == 1.0 and before["purchase_hit_rate"] == 1.0
    assert by_segment[segment]["lists"] == 1 and by_segment[segment]["purchase_hit_rate"] is None


def test_segment_sizes_follow_each_customers_current_segment(pipeline):
    for n in range(30):
        for k in range(1 + n % 3):
            order = PurchaseEvent(f"s{n}-{k}", f"shopper{n}", f"so{n}-{k}", [OrderLine("A", 1 + 20 * (n % 2), 3.0)],
                                  NOW + k * 86400)
            asyncio.run(pipeline.handle_user_events([Msg("purchases", encode_event(order))]))
    current = Counter(load_features(pipeline.sessions[f"shopper{n}".encode()]).segment for n in range(30))
    warmup = Counter(load_features(pipeline.sessions[f"other{n}".encode()]).segment for n in range(3))
    sizes = {name: size for name, size in pipeline.writer.segment_sizes.items() if size}
    assert sizes == dict(current + warmup)


def test_out_of_order_events_the_list_reflects_the_newest_and_earns_the_next_actions(pipeline):
    # The purchase is fetched before the click that preceded it (they travel on different topics).
    order = Msg("purchases", encode_event(PurchaseEvent("p1", "u1", "o1", [OrderLine("B", 1, 1.0)], NOW + 3)))
    asyncio.run(pipeline.handle_user_events([order]))
    assert pipeline.writer.lists["u1"].event_ts == NOW + 3
    late_click = Msg("clicks", encode_event(ClickEvent("c1", "u1", "A", "view", NOW + 2)))
    asyncio.run(pipeline.handle_user_events([late_click]))
    assert pipeline.writer.lists["u1"].event_ts == NOW + 3  # not moved back to the click's time
    # The list answering the late click was served at the click's time, so the shopper's next
    # view of one of its items is credited to it.
    shown = pipeline.writer.lists["u1"].items[0]
    asyncio.run(pipeline.handle_user_events([Msg("clicks", encode_event(ClickEvent("c2", "u1", shown, "view", NOW + 2.5)))]))
    assert [(f.item_id, f.action, f.attribution) for f in pipeline.outbox.feedbacks] == [(shown, "view", "implicit")]


class FailsOnItem(PopularityCooccurrenceBlend):
    """A model with a bug that only one item triggers."""

    def learn_one(self, interaction):
        if interaction.item_id == "BOOM":
            raise KeyError("BOOM")
        super().learn_one(interaction)


def test_an_event_that_fails_in_processing_is_dead_lettered_and_the_batch_goes_on():
    p = EventPipeline(SETTINGS, FailsOnItem(), RecordingWriter(), {}, RecordingOutbox(), "test-v1")
    batch = [Msg("clicks", encode_event(ClickEvent(f"e{n}", f"u{n}", item, "view", NOW + n)))
             for n, item in enumerate(["A", "BOOM", "B"])]
    asyncio.run(p.handle_user_events(batch))
    assert [(topic, reason.split(":")[0]) for topic, reason, _ in p.outbox.dead] == [("clicks", "processing failed")]
    assert "KeyError" in p.outbox.dead[0][1] and p.outbox.dead[0][2] == batch[1].value
    assert p.writer.counters == {"valid:clicks": 2, "dead_letter:clicks": 1}
    assert {"u0", "u2"} <= set(p.writer.lists)


def test_a_redelivery_is_recognised_by_its_offset_however_many_events_came_between(pipeline):
    first = Msg("clicks", encode_event(ClickEvent("old", "u1", "A", "view", NOW)), partition=1, offset=10)
    asyncio.run(pipeline.handle_user_events([first]))
    later = [Msg("clicks", encode_event(ClickEvent(f"n{n}", "u1", "B", "view", NOW + n)), partition=1, offset=11 + n)
             for n in range(300)]  # more than any window of event ids
    asyncio.run(pipeline.handle_user_events(later))
    before = dict(pipeline.writer.counters)
    features_before = load_features(pipeline.sessions[b"u1"])
    redelivered = Msg("clicks", first.value, partition=1, offset=10)
    asyncio.run(pipeline.handle_user_events([redelivered]))
    assert pipeline.writer.counters == before  # counted when it first came
    assert load_features(pipeline.sessions[b"u1"]).counts == features_before.counts
    # A recent event again at a new offset is a duplicate the producer sent: counted as one.
    asyncio.run(pipeline.handle_user_events([Msg("clicks", later[-1].value, partition=1, offset=400)]))
    assert pipeline.writer.counters["duplicate:clicks"] == before.get("duplicate:clicks", 0) + 1


def test_after_a_crash_each_event_is_folded_once_and_counted_once():
    """The session features and Redis's counters may each have a batch the other lacks."""
    events = [Msg("clicks", encode_event(ClickEvent(f"c{n}", "u1", "A", "view", NOW + n)), partition=0, offset=n)
              for n in range(4)]
    # Redis counted the batch, but the session changelog lost it: fold it again, count nothing.
    p = new_pipeline()
    p.writer.positions["clicks:0"] = Position(3, 0.0)
    asyncio.run(p.handle_user_events(events))
    assert load_features(p.sessions[b"u1"]).counts == {"view": 4} and p.writer.counters.get("valid:clicks", 0) == 0
    # The session has the batch, but Redis never counted it: count it, fold nothing again.
    p.writer.positions.clear()
    asyncio.run(p.handle_user_events(events))
    assert load_features(p.sessions[b"u1"]).counts == {"view": 4} and p.writer.counters["valid:clicks"] == 4
    asyncio.run(p.handle_user_events(events))  # and once both have it, nothing changes
    assert p.writer.counters == {"valid:clicks": 4} and "recs:u1" not in p.writer.slot_lists
    asyncio.run(p.handle_user_events(events[:2]))  # a partition read again from its start stays counted
    assert p.writer.positions == {"clicks:0": Position(3, 0.0)} and p.writer.counters == {"valid:clicks": 4}
    # A log that started over (new messages at old offsets, later in time) is new, not a redelivery.
    restarted = [Msg("clicks", encode_event(ClickEvent(f"r{n}", "u1", "B", "view", NOW + 10 + n)), partition=0,
                     offset=n, timestamp=1.0) for n in range(2)]
    asyncio.run(p.handle_user_events(restarted))
    assert p.writer.counters == {"valid:clicks": 6} and load_features(p.sessions[b"u1"]).counts == {"view": 6}


def test_messages_the_consumer_skipped_are_read_back_in_place_counted_and_acknowledged():
    log = [ConsumerRecord("clicks", 2, 100 + n, 1000 * n, 0, b"u1", encode_event(ClickEvent(f"g{n}", "u1", item, "view",
                                                                                           NOW + n)), None, 2, 100, [])
           for n, item in enumerate("ABCDEF")]
    reads, acknowledged = [], []

    async def read_back(ranges):
        reads.append(dict(ranges))
        return {(topic, partition): [r for r in log if r.partition == partition and first <= r.offset <= last]
                for (topic, partition), (first, last) in ranges.items()}

    def delivered(*records):
        return [Msg(r.topic, r.value, partition=r.partition, offset=r.offset, timestamp=r.timestamp / 1000)
                for r in records]

    p = new_pipeline(read_back=read_back, acknowledge=acknowledged.append)
    asyncio.run(p.handle_user_events(delivered(log[0])))
    asyncio.run(p.handle_user_events(delivered(log[1], log[3], log[5])))  # 102 and 104 never came
    assert reads == [{("clicks", 2): (102, 104)}]
    assert [message.offset for message in acknowledged] == [102, 104]
    assert p.writer.counters["valid:clicks"] == 6 and p.writer.positions["clicks:2"].offset == 105
    assert load_features(p.sessions[b"u1"]).recent_items == list("ABCDEF")
    asyncio.run(p.handle_user_events(delivered(log[5])))  # a redelivery is no gap: nothing read
    assert len(reads) == 1 and p.writer.counters["valid:clicks"] == 6


def test_a_record_handed_over_twice_in_one_batch_counts_and_dead_letters_once():
    p = new_pipeline()
    good = Msg("clicks", encode_event(ClickEvent("t1", "u1", "A", "view", NOW)), partition=3, offset=7)
    bad = Msg("clicks", b"{oops", key=b"u1", partition=3, offset=8)
    asyncio.run(p.handle_user_events([good, bad, good, bad]))
    assert len(p.outbox.dead) == 1
    assert p.writer.counters == {"valid:clicks": 1, "dead_letter:clicks": 1}


def test_missing_ranges_run_from_the_counted_position_and_between_messages():
    def at(*offsets, timestamp=5.0):
        return [Msg("clicks", b"", partition=0, offset=offset, timestamp=timestamp) for offset in offsets]

    assert missing_ranges(at(11, 12), {"clicks:0": Position(10, 5.0)}) == {}
    assert missing_ranges(at(14, 12, 18), {"clicks:0": Position(10, 5.0)}) == {"clicks:0": [(11, 11), (13, 13),
                                                                                          (15, 17)]}
    assert missing_ranges(at(3, 5), {}) == {"clicks:0": [(4, 4)]}  # nothing counted yet: from the first
    # Below the counted position all was counted: only what lies beyond it can be missing.
    assert missing_ranges(at(7, 9, 13), {"clicks:0": Position(10, 5.0)}) == {"clicks:0": [(11, 12)]}
    # A log that started over (lower offsets, later times) is measured from its start.
    assert missing_ranges(at(0, 1, timestamp=9.0), {"clicks:0": Position(10, 5.0)}) == {}
    assert missing_ranges(at(2, 3, timestamp=9.0), {"clicks:0": Position(10, 5.0)}) == {"clicks:0": [(0, 1)]}


def test_a_key_other_than_the_user_id_is_dead_lettered(pipeline):
    asyncio.run(pipeline.handle_user_events([Msg("clicks", encode_event(ClickEvent("k1", "u1", "A", "view", NOW)),
                                                 key=b"someone-else")]))
    assert pipeline.outbox.dead[-1][1] == "Kafka key must be the event's user_id; got key b'someone-else'"


class KillsTheWorkerOnItem(PopularityCooccurrenceBlend):
    """A model that takes the whole worker down on one item, as running out of memory would."""

    def learn_one(self, interaction):
        if interaction.item_id == "KILL":
            raise SystemExit("the worker dies")
        super().learn_one(interaction)


def test_a_message_that_keeps_killing_workers_is_dead_lettered_and_the_rest_is_counted_once():
    writer, sessions, outbox = RecordingWriter(), {}, RecordingOutbox()
    batch = [Msg("clicks", encode_event(ClickEvent(f"k{n}", f"u{n}", item, "view", NOW + n)), partition=3, offset=50 + n)
             for n, item in enumerate(["A", "B", "KILL", "C"])]
    crashes = 0
    while True:  # each attempt is a restarted worker: a new pipeline on the same Redis, table and topics
        pipeline = EventPipeline(SETTINGS, KillsTheWorkerOnItem(), writer, sessions, outbox, "test-v1")
        try:
            asyncio.run(pipeline.handle_user_events(batch))
            break
        except SystemExit:
            crashes += 1
            assert crashes < 5, "the breaker never stepped in"
    assert crashes == 2  # the batch whole, then one message at a time up to the one that kills
    assert [(topic, reason) for topic, reason, _ in outbox.dead] == [
        ("clicks", "2 workers stopped while processing it (crash-loop breaker)")]
    assert outbox.dead[0][2] == batch[2].value
    assert writer.counters == {"valid:clicks": 3, "dead_letter:clicks": 1}
    assert pipeline.metrics.crash_loop_skips._value.get() == 1
    # The next batch on the partition is processed whole again.
    later = Msg("clicks", encode_event(ClickEvent("k9", "u9", "D", "view", NOW + 9)), partition=3, offset=60)
    asyncio.run(pipeline.handle_user_events([later]))
    assert writer.attempts["clicks:3"].count == 1 and writer.counters["valid:clicks"] == 4


def test_click_through_counts_a_list_once_however_many_of_its_items_are_viewed(pipeline):
    from streams.online_summaries import add_counts, decode_summary, summary_counts, window_report

    pipeline.outbox.summaries.clear()
    asyncio.run(pipeline.handle_user_events(clicks(("view", "A", 1))))
    served = pipeline.writer.lists["u1"].items[:3]
    views = [Msg("clicks", encode_event(ClickEvent(f"v{n}", "u1", item, "view", NOW + 2 + n)))
             for n, item in enumerate(served)]
    asyncio.run(pipeline.handle_user_events(views))
    totals = {}
    for key, value in pipeline.outbox.summaries:
        totals[key] = add_counts(totals.get(key, {}), summary_counts(decode_summary(value)))
    (scope,) = window_report(totals.values(), seconds=1.0)["scopes"]
    # Three credited views of the first list, and two lists written: half of the lists were clicked.
    assert (scope["views"], scope["clicked_lists"], scope["lists"]) == (3, 1, 2)
    assert scope["click_through"] == 0.5
    assert pipeline.metrics.clicked_lists_total.labels(model_version="test-v1", segment="")._value.get() == 1


def test_a_dismissed_item_leaves_every_list_at_once_and_is_recorded_for_later_publishes(pipeline):
    asyncio.run(pipeline.handle_user_events(clicks(("view", "A", 1))))
    shown = pipeline.writer.lists["u1"].items[0]
    dismiss = Msg("clicks", encode_event(ClickEvent("d1", "u1", shown, "dismiss", NOW + 5)))
    asyncio.run(pipeline.handle_user_events([dismiss]))
    assert shown not in pipeline.writer.lists["u1"].items
    assert all(shown not in listing.items for listing in pipeline.writer.slot_lists.values())
    assert pipeline.writer.dismissals == {"u1": {shown: NOW + 5 + SETTINGS.dismiss_days * 86400}}
    assert load_features(pipeline.sessions[b"u1"]).recent_items == ["A"]


def test_every_listed_item_has_a_reason_unless_explaining_is_switched_off(pipeline):
    asyncio.run(pipeline.handle_user_events(clicks(("view", "A", 1))))
    listing = pipeline.writer.lists["u1"]
    assert len(listing.reasons) == len(listing.items) > 0 and len(pipeline.writer.popular.reasons) > 0
    quiet = EventPipeline(Settings(recs_count=5, explain_lists=False), PopularityCooccurrenceBlend(), RecordingWriter(),
                          {}, RecordingOutbox(), "test-v1")
    asyncio.run(quiet.handle_user_events(clicks(("view", "A", 1))))
    assert quiet.writer.lists["u1"].items and quiet.writer.lists["u1"].reasons is None
