"""Prequential evaluation in the worker: before each purchase, what would each list have served?

Three lists are scored against every purchase: the static offline list as
published, the offline list re-ranked with the live context (recent items from
earlier visits and the first item of this one), and the
re-ranked list with online-segment fallbacks for customers the offline model
never saw. Sums accumulate in the Redis hash ``stats:prequential``
(``{variant}:purchases``, ``{variant}:hits``, ``{variant}:ap``, and the same prefixed
``new:`` for customers the offline model never saw).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from models.base import Context
from models.offline_lists import OfflineListsWithSession
from models.ranking_metrics import average_precision_at_k
from streams.events import PurchaseEvent
from streams.session_features import SessionFeatures

K = 10
VARIANTS = ("static", "session", "session+segments")


def score_purchase(model: OfflineListsWithSession, features: SessionFeatures | None, event: PurchaseEvent,
                   totals: Counter, gap_seconds: float) -> None:
    """Add one purchase's hit@10 and AP@10 for each list, as served after the visit's first item.

    The storefront refreshes the list once the shopper opens the first product of the
    visit; that item is then known and leaves the relevant set. The rest of the visit's
    clicks are left out: replayed clicks are derived from the very order being scored.
    Orders with nothing left to predict are skipped.
    """
    in_visit = features is not None and features.first_item and event.ts - features.last_seen <= gap_seconds
    first = features.first_item if in_visit else ""
    bought = {line.item_id for line in event.lines} - {first}
    if not bought:
        return
    context = features.context_before_session() if features else []
    if first:
        context = [*context, first]
    segment = features.segment if features else ""
    session = Context(recent=context, exclude={first} if first else set())
    lists = {
        "static": model.static_list(event.user_id, K),
        "session": model.recommend(event.user_id, K, session),
        "session+segments": model.recommend(event.user_id, K, replace(session, segment=segment)),
    }
    groups = ["", "new:"] if event.user_id not in model.user_lists else [""]
    for variant, scored in lists.items():
        ranked = [item for item, _ in scored]
        hit = int(bool(bought.intersection(ranked)))
        ap = average_precision_at_k(ranked, bought, K)
        for group in groups:
            totals[f"{group}{variant}:purchases"] += 1
            totals[f"{group}{variant}:hits"] += hit
            totals[f"{group}{variant}:ap"] += ap


def prequential_table(totals: dict[str, float]) -> list[dict]:
    """One row per list, over all purchases, then over purchases by customers new since training."""
    rows = []
    for group, customers in (("", "all"), ("new:", "new since training")):
        for variant in VARIANTS:
            purchases = totals.get(f"{group}{variant}:purchases", 0)
            if purchases:
                rows.append({"list": variant, "customers": customers, "purchases": int(purchases),
                             "hit_rate@10": totals.get(f"{group}{variant}:hits", 0) / purchases,
                             "map@10": totals.get(f"{group}{variant}:ap", 0) / purchases})
    return rows
