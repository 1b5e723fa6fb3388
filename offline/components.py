"""The hybrid's components and the settings each may take, tried on the validation split.

Grids are small on purpose: each point is one fit on the validation history.
Half-lives are in days; ``1e6`` means no decay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models.base import BatchRecommender
from models.content import ContentSimilarity
from models.cooccurrence import ItemCooccurrence
from models.ease import EASE
from models.factorization import ImplicitALS
from models.popularity import RecentPopularity
from models.repeat_purchase import RepeatPurchase
from models.surprise_cf import SurpriseItemKNN, SurpriseSVD


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    make: Callable[..., BatchRecommender]
    grid: tuple[dict, ...] = field(default=({},))

    def build(self, params: dict) -> BatchRecommender:
        return self.make(**params)


# Popularity comes first: its chosen variant fills every other list, as it does in Redis.
COMPONENTS = (
    ComponentSpec("popularity", RecentPopularity, ({"recent_share": 0.1}, {"recent_share": 1.0})),
    ComponentSpec("repeat", RepeatPurchase, ({"half_life_days": 30}, {"half_life_days": 180},
                                             {"half_life_days": 1e6})),
    ComponentSpec("cooccurrence", ItemCooccurrence, ({"history_half_life_days": 30},
                                                     {"history_half_life_days": 1e6})),
    ComponentSpec("ease", EASE, ({"l2": 100.0}, {"l2": 500.0})),
    ComponentSpec("als", ImplicitALS, ({"factors": 64, "regularization": 0.05},)),
    ComponentSpec("content", ContentSimilarity),
    ComponentSpec("surprise-knn", SurpriseItemKNN, ({"similarity": "pearson_baseline"}, {"similarity": "cosine"})),
    ComponentSpec("surprise-svd", SurpriseSVD, ({"n_factors": 32, "n_epochs": 20, "lr_all": 0.03},)),
)
COMPONENT_NAMES = [spec.name for spec in COMPONENTS]
SPECS = {spec.name: spec for spec in COMPONENTS}


def make_component(name: str, params: dict | None = None) -> BatchRecommender:
    """The component ``name`` with ``params``, else its first grid point."""
    spec = SPECS[name]
    return spec.build(spec.grid[0] if params is None else params)
