"""Every streaming recommender passes the shared contract checks (``models.checks``)."""

import pytest

from models.checks import CHECKS
from models.cooccurrence import SessionCooccurrence
from models.offline_lists import ItemInfo, OfflineListsWithSession
from models.popularity import RecencyWeightedPopularity
from models.session_blend import PopularityCooccurrenceBlend


def offline_lists() -> OfflineListsWithSession:
    return OfflineListsWithSession(
        user_lists={"u1": [("jam", 0.9), ("cups", 0.5), ("bread", 0.2)]},
        similar_items={"tea": [("cups", 1.0), ("saucers", 0.6)]}, popular=[("tea", 1.0), ("cups", 0.8), ("jam", 0.3)],
        version="v1", complements={"cups": [("saucers", 1.0)]}, items={"tea": ItemInfo("drinks", 3.0)},
        segment_popular={"regular": [("scones", 1.0)]},
        buy_again={"u1": [("tea", 1.0), ("jam", 0.4)]}, discover={"u1": [("scones", 0.7), ("cups", 0.6)]},
    )


MODELS = {
    "recency-popularity": RecencyWeightedPopularity,
    "session-cooccurrence": SessionCooccurrence,
    "popularity-cooccurrence": PopularityCooccurrenceBlend,
    "offline-lists-with-session": offline_lists,
}


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__ for check in CHECKS])
@pytest.mark.parametrize("make", MODELS.values(), ids=list(MODELS))
def test_model_passes_the_contract(make, check):
    check(make())
