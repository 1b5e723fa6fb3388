"""Which validation split fits a history: the trainer learns every choice on it.

The split mirrors how the data is used, judged from the data itself:

* ``global-time``: users share a calendar (many of the users active at the end of
  the history were active before it), so the last stretch of time is held out;
* ``last-basket``: users come at different times and buy in baskets, so each
  user's last order is held out;
* ``last-items``: no repeat purchases (a ratings or consumption log), however its
  events group into orders, so each user's most recent interactions are held out;
* ``random-items``: no usable timestamps, so a seeded random share per user.

The test window, if any, is never part of the history given here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.interactions import Interactions
from offline.evaluation import PROTOCOLS, HoldoutSplit, split_by

HELD_OUT_SHARE = 0.1  # the global cut leaves this share of the interactions after it
MIN_RETURNING_USERS = 50
MIN_RETURNING_SHARE = 0.3
# Under this share of order lines repeating an earlier customer-item pair, the history is a
# ratings or consumption log. Its order size says nothing: ratings entered in the same second
# share an order id (MovieLens: 2 per "order").
MAX_RATINGS_LOG_REPEATS = 0.01
# Whose history each protocol can hold part of out, for the error where a history has no one.
HOLDS_OUT = {"global-time": "customers who bought both before and after its cut",
             "last-basket": "customers with two orders or more",
             "last-items": "customers with two interactions or more",
             "random-items": "customers with two interactions or more"}


@dataclass(frozen=True)
class Protocol:
    name: str
    reason: str


def choose_protocol(events: pd.DataFrame) -> Protocol:
    """The validation protocol that fits ``events`` (order lines), and why."""
    if events["timestamp"].nunique() <= 1:
        return Protocol("random-items", "the history has no usable timestamps")
    cut = global_cut(events)
    users, user_ids = pd.factorize(events["user_id"])
    returning, active_after = _returning_customers(events, users, len(user_ids), cut)
    share = returning / max(active_after, 1)
    repeats = _repeated_pair_share(events, users)
    ratings_log = repeats < MAX_RATINGS_LOG_REPEATS
    if returning >= MIN_RETURNING_USERS and share >= MIN_RETURNING_SHARE and not ratings_log:
        return Protocol("global-time", f"users share a calendar: {share:.0%} of the {active_after:,} customers "
                                       f"active after {cut:%Y-%m-%d} were active before")
    if ratings_log:
        return Protocol("last-items", f"{repeats:.1%} repeated customer-item pairs: a ratings-style log")
    return Protocol("last-basket", f"only {share:.0%} of the customers active after {cut:%Y-%m-%d} were active "
                                   "before: customers keep their own calendars")


# On integer codes (``users``: each line's customer code): sets or groups of millions of id
# strings would take most of the time.
def _returning_customers(events: pd.DataFrame, users: np.ndarray, n_users: int,
                         cut: pd.Timestamp) -> tuple[int, int]:
    """How many customers active from ``cut`` on were active before it, and how many were active from it."""
    later = (events["timestamp"] >= cut).to_numpy()
    before = np.bincount(users[~later], minlength=n_users) > 0
    after = np.bincount(users[later], minlength=n_users) > 0
    return int((before & after).sum()), int(after.sum())


def _repeated_pair_share(events: pd.DataFrame, users: np.ndarray) -> float:
    """The share of order lines that repeat an earlier line's customer-item pair."""
    items = pd.factorize(events["item_id"])[0]
    pairs = len(pd.unique(users.astype(np.int64) * (items.max() + 1) + items))  # hashed: numpy's unique sorts
    return (len(events) - pairs) / len(events)


def global_cut(events: pd.DataFrame, held_out_share: float = HELD_OUT_SHARE) -> pd.Timestamp:
    """The time after which ``held_out_share`` of the interactions lie."""
    return events["timestamp"].quantile(1 - held_out_share)


def validation_split(data: Interactions, protocol: str) -> HoldoutSplit:
    return split_by(data, protocol, global_cut(data.events))


def resolve_protocol(events: pd.DataFrame, requested: str | None) -> Protocol:
    """``requested`` when given (``auto`` or None: chosen from the data)."""
    if requested in (None, "", "auto"):
        return choose_protocol(events)
    if requested not in PROTOCOLS:
        raise ValueError(f"unknown validation protocol {requested!r}; choose auto or one of {', '.join(PROTOCOLS)}")
    return Protocol(requested, "set by the operator")
