"""Why an item is on a customer's list: a short reason code and its evidence, decided as the list is built.

| code | evidence |
|---|---|
| ``bought_before`` | ``times|YYYY-MM-DD``: how often the customer bought it, and when last |
| ``similar_to`` | the customer's item (bought or viewed) it neighbours |
| ``bought_with`` | the item in the cart it complements |
| ``popular_in_segment`` | the customer's segment |
| ``trending`` | empty: among the shop's (or the category's) best sellers of late |
| ``discover`` | the model that found it |
"""

from __future__ import annotations

import calendar
import functools
import time
from typing import NamedTuple

BOUGHT_BEFORE, SIMILAR_TO, BOUGHT_WITH = "bought_before", "similar_to", "bought_with"
POPULAR_IN_SEGMENT, TRENDING, DISCOVER = "popular_in_segment", "trending", "discover"
#: Stored lists keep a code as its index here: one byte per item.
REASON_CODES = (BOUGHT_BEFORE, SIMILAR_TO, BOUGHT_WITH, POPULAR_IN_SEGMENT, TRENDING, DISCOVER)
CODE_INDEX = {code: n for n, code in enumerate(REASON_CODES)}
PRODUCT_EVIDENCE = (SIMILAR_TO, BOUGHT_WITH)  # codes whose evidence is a product


class Reason(NamedTuple):
    code: str
    evidence: str = ""


#: What a list stored without reasons says of its items.
UNKNOWN = Reason(DISCOVER, "")


def products_to_name(items, reasons) -> list[str]:
    """The products a list and its reasons mention, each once: the titles to look up."""
    return sorted(set(items) | {evidence for code, evidence in reasons if code in PRODUCT_EVIDENCE})


def bought_before(times: int, last_ts: float) -> Reason:
    return Reason(BOUGHT_BEFORE, f"{times}|{day_to_date(int(last_ts) // DAY)}")


DAY = 86400


@functools.lru_cache(maxsize=4096)
def day_to_date(day: int) -> str:
    """``YYYY-MM-DD`` of a day counted from 1970-01-01."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY))


@functools.lru_cache(maxsize=4096)
def date_to_day(date: str) -> int:
    return calendar.timegm(time.strptime(date, "%Y-%m-%d")) // DAY


def popular(segment: str) -> Reason:
    return Reason(POPULAR_IN_SEGMENT, segment) if segment else Reason(TRENDING)


def describe(reason: Reason, title_of) -> str:
    """The reason in a sentence for the shopper; ``title_of(item_id)`` names a product.

    >>> describe(Reason("bought_before", "3|2011-11-29"), str)
    'You bought this 3 times, last on 2011-11-29'
    >>> describe(Reason("similar_to", "85123A"), lambda item: "WHITE HANGING HEART T-LIGHT HOLDER")
    'Because you bought or viewed WHITE HANGING HEART T-LIGHT HOLDER'
    """
    code, evidence = reason
    if code == BOUGHT_BEFORE:
        times, _, last = evidence.partition("|")
        if not last:
            return "You bought this before"
        return f"You bought this {'once' if times == '1' else f'{times} times'}, last on {last}"
    if code == SIMILAR_TO:
        return f"Because you bought or viewed {title_of(evidence)}"
    if code == BOUGHT_WITH:
        return f"Goes with {title_of(evidence)} in your basket"
    if code == POPULAR_IN_SEGMENT:
        return f"Popular with {evidence} customers"
    if code == TRENDING:
        return "Popular in the shop right now"
    return f"Picked for you by the {evidence} model" if evidence else "Picked for you"
