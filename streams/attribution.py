"""Which served list earned an action: explicitly by ``rec_id``, or implicitly by last touch.

Last touch: the latest list served before the action, within the attribution
window, that showed the item. Lists leave out what is in the cart, so the
list that earned a purchase is usually the one the shopper saw before adding
the item to the cart, not the latest one.
"""

from __future__ import annotations

from streams.events import ClickEvent, FeedbackEvent, UserEvent
from streams.session_features import ServedList, SessionFeatures


def _credited_list(served: list[ServedList], rec_id: str | None, item: str, ts: float, window_seconds: float):
    """The list ``item`` is credited to, and how: the one named by ``rec_id``, else the latest list
    served before the action, within the window, that showed the item (last touch)."""
    if rec_id:
        for listing in reversed(served):
            if listing.rec_id == rec_id:
                return (listing, "explicit") if item in listing.items else (None, "")
        return None, ""
    for listing in reversed(served):
        if listing.at <= ts and ts - listing.at <= window_seconds and item in listing.items:
            return listing, "implicit"
    return None, ""


def attribute(features: SessionFeatures | None, event: UserEvent, window_seconds: float) -> list[FeedbackEvent]:
    """Feedback for each item of ``event`` that was on the list it is attributed to.

    Call before ``event`` changes the features: the lists considered are those served before it.
    """
    if features is None or not features.served or (isinstance(event, ClickEvent) and event.type == "remove_from_cart"):
        return []
    if isinstance(event, ClickEvent):
        actions = [(event.item_id, event.type, event.event_id)]
    else:
        actions = [(line.item_id, "purchase", f"{event.event_id}:{line.item_id}") for line in event.lines]
    feedback = []
    for item, action, event_id in actions:
        listing, how = _credited_list(features.served, event.rec_id, item, event.ts, window_seconds)
        if listing is not None:
            feedback.append(FeedbackEvent(
                event_id=event_id, user_id=event.user_id, item_id=item, action=action,
                rank=listing.items.index(item) + 1, rec_id=listing.rec_id, model_version=listing.model_version,
                segment=features.segment, attribution=how, latency_seconds=round(event.ts - listing.at, 3), ts=event.ts,
                arm=listing.arm))
    return feedback


def first_clicks(features: SessionFeatures | None, earned: list[FeedbackEvent]) -> list[FeedbackEvent]:
    """The credited views in ``earned`` that are the first click on their list, marking those lists
    clicked: click-through counts each served list once, however many of its items are viewed."""
    firsts = []
    for feedback in earned:
        if feedback.action != "view" or features is None:
            continue
        listing = next((served for served in features.served if served.rec_id == feedback.rec_id), None)
        if listing is not None and not listing.clicked:
            listing.clicked = True
            firsts.append(feedback)
    return firsts
