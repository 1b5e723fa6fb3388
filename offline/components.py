"""The hybrid's components and the settings each may take, tried on the validation split.

Grids are small on purpose: each point is one fit on the validation history.
Each grid's first point is the setting that holds up best across shops: on a
large history (``LARGE_HISTORY`` order lines or more) it is the only one tried,
except for the cheap components (popularity, repeat), whose whole grid always is.
Half-lives are in days; ``1e6`` means no decay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models.base import BatchRecommender
from models.content import ContentSimilarity
from models.cooccurrence import ItemCooccurrence
from models.customer_neighbours import CustomerNeighbours
from models.ease import EASE
from models.factorization import ImplicitALS
from models.popularity import RecentPopularity, TrendingPopularity
from models.repeat_purchase import RepeatPurchase
from models.surprise_cf import SurpriseItemKNN, SurpriseSVD


LARGE_HISTORY = 500_000


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    make: Callable[..., BatchRecommender]
    grid: tuple[dict, ...] = field(default=({},))
    cheap: bool = False  # fits in seconds at any size: its whole grid is always tried

    def grid_for(self, order_lines: int) -> tuple[dict, ...]:
        """The settings worth trying on a history of ``order_lines``."""
        return self.grid if self.cheap or order_lines <= LARGE_HISTORY else self.grid[:1]

    def build(self, params: dict) -> BatchRecommender:
        return self.make(**params)


# Popularity comes first: its chosen variant fills every other list, as it does in Redis.
COMPONENTS = (
    ComponentSpec("popularity", RecentPopularity, ({"recent_share": 1.0}, {"recent_share": 0.1}), cheap=True),
    ComponentSpec("trending", TrendingPopularity, ({"recent_share": 0.05}, {"recent_share": 0.02}), cheap=True),
    ComponentSpec("repeat", RepeatPurchase, ({"half_life_days": 180}, {"half_life_days": 30},
                                             {"half_life_days": 1e6}), cheap=True),
    ComponentSpec("cooccurrence", ItemCooccurrence, ({"history_half_life_days": 1e6},
                                                     {"history_half_life_days": 30})),
    ComponentSpec("ease", EASE, ({"l2": 100.0}, {"l2": 200.0}, {"l2": 500.0})),
    ComponentSpec("als", ImplicitALS, ({"factors": 64, "regularization": 0.05},)),
    ComponentSpec("customer-knn", CustomerNeighbours, ({"neighbours": 200}, {"neighbours": 1000},
                                                      {"neighbours": 50})),
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
