"""Prequential evaluation in the worker: before each purchase, what would each list have served?

Three lists are scored against every purchase: the static offline list as
published, the offline list re-ranked with the customer's live recent items, and the
re-ranked list with online-segment fallbacks for customers the offline model
never saw. Sums accumulate in the Redis hash ``stats:prequential``
(``{variant}:purchases``, ``{variant}:hits``, ``{variant}:ap``).
"""

from __future__ import annotations

from collections import Counter
from models.offline_lists import OfflineListsWithSession
from models.ranking_metrics import average_precision_at_k
from streams.events import PurchaseEvent
from streams.session_features import SessionFeatures

K = 10
VARIANTS = ("static", "session", "session+segments")


def score_purchase(model: OfflineListsWithSession, features: SessionFeatures | None, event: PurchaseEvent,
                   totals: Counter) -> None:
    """Add one purchase's hit@10 and AP@10 for each list, as served when the visit began.

    The lists are those of the moment the purchasing session started: the clicks of
    the visit itself are left out of the context, since replayed clicks are derived
    from the very order being scored and would leak it.
    """
    bought = {line.item_id for line in event.lines}
    context = features.context_before_session() if features else []
    segment = features.segment if features else ""
    lists = {
        "static": model.static_list(event.user_id, K),
        "session": model.recommend(event.user_id, context, K),
        "session+segments": model.recommend(event.user_id, context, K, segment=segment),
    }
    for variant, scored in lists.items():
        ranked = [item for item, _ in scored]
        totals[f"{variant}:purchases"] += 1
        totals[f"{variant}:hits"] += int(bool(bought.intersection(ranked)))
        totals[f"{variant}:ap"] += average_precision_at_k(ranked, bought, K)


def prequential_table(totals: dict[str, float]) -> list[dict]:
    rows = []
    for variant in VARIANTS:
        purchases = totals.get(f"{variant}:purchases", 0)
        if purchases:
            rows.append({"list": variant, "purchases": int(purchases),
                         "hit_rate@10": totals.get(f"{variant}:hits", 0) / purchases,
                         "map@10": totals.get(f"{variant}:ap", 0) / purchases})
    return rows
