"""Which served list earned an action: explicitly by ``rec_id``, or implicitly by the latest list in a window."""

from __future__ import annotations

from streams.events import ClickEvent, FeedbackEvent, UserEvent
from streams.session_features import ServedList, SessionFeatures


def _find_list(served: list[ServedList], rec_id: str | None, ts: float, window_seconds: float):
    if rec_id:
        for listing in reversed(served):
            if listing.rec_id == rec_id:
                return listing, "explicit"
        return None, ""
    for listing in reversed(served):
        if listing.at <= ts and ts - listing.at <= window_seconds:
            return listing, "implicit"
    return None, ""


def attribute(features: SessionFeatures | None, event: UserEvent, window_seconds: float) -> list[FeedbackEvent]:
    """Feedback for each item of ``event`` that was on the list it is attributed to.

    Call before ``event`` changes the features: the lists considered are those served before it.
    """
    if features is None or not features.served or (isinstance(event, ClickEvent) and event.type == "remove_from_cart"):
        return []
    listing, how = _find_list(features.served, event.rec_id, event.ts, window_seconds)
    if listing is None:
        return []
    if isinstance(event, ClickEvent):
        actions = [(event.item_id, event.type, event.event_id)]
    else:
        actions = [(line.item_id, "purchase", f"{event.event_id}:{line.item_id}") for line in event.lines]
    feedback = []
    for item, action, event_id in actions:
        if item in listing.items:
            feedback.append(FeedbackEvent(
                event_id=event_id, user_id=event.user_id, item_id=item, action=action,
                rank=listing.items.index(item) + 1, rec_id=listing.rec_id, model_version=listing.model_version,
                segment=features.segment, attribution=how, latency_seconds=round(event.ts - listing.at, 3), ts=event.ts))
    return feedback
