"""Choosing what to publish, on the validation split only.

Every component is fitted at each point of its grid and keeps its best setting;
a component that cannot fit the data is left out with its reason. The hybrid's
rankers are scored forward in time where the history allows (learned on an
earlier period, scored on the validation period), else out of fold (each half of
the validation customers ranked by a ranker learned on the other half), so the
hybrid is compared on the same footing as its components. The guard then publishes, for each list, the
model with the best validation MAP@10: the hybrid only where it wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from models.base import BatchRecommender, CannotFit, SparseBlock
from models.hybrid import VIEWS, Candidates, candidates, fit_ranker, labelled
from models.interactions import Interactions
from offline.components import COMPONENTS
from offline.evaluation import HoldoutSplit, evaluate_lists, filled, list_metrics, model_lists, view_relevance

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
K = 10
PER_MODEL = 50


@dataclass
class Selection:
    """What validation decided, as recorded in the manifest and the evaluation report."""

    protocol: str
    protocol_reason: str
    validation_users: int
    params: dict[str, dict] = field(default_factory=dict)  # kept component -> its chosen setting
    dropped: dict[str, str] = field(default_factory=dict)  # component -> why it was left out
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> view -> MAP@10
    published: dict[str, str] = field(default_factory=dict)  # view -> model
    reasons: dict[str, str] = field(default_factory=dict)  # view -> why that model

    def as_dict(self) -> dict:
        return {"protocol": self.protocol, "protocol_reason": self.protocol_reason,
                "validation_users": self.validation_users, "params": self.params, "dropped": self.dropped,
                "validation_map@10": self.scores, "published": self.published, "reasons": self.reasons}


def select_components(split: HoldoutSplit, selection: Selection, progress: Progress,
                      history: Interactions) -> dict[str, BatchRecommender]:
    """Each component at its best grid point for ``history`` (the whole history, of which the
    split may be a sample), fitted on ``split.train``; records scores and drops."""
    fitted: dict[str, BatchRecommender] = {}
    for spec in COMPONENTS:
        best = None
        for params in spec.grid_for(len(history.events)):
            started = time.monotonic()
            try:
                if (reason := spec.build(params).refuses(history)) is not None:
                    raise CannotFit(reason)
                model = spec.build(params).fit(split.train)
            except Exception as exc:  # a component's failure is its own: the others go on
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("component %s %s left out: %s", spec.name, params, reason)
                selection.dropped.setdefault(spec.name, reason)
                continue
            filler = fitted.get("popularity", model if spec.name == "popularity" else None)
            result = evaluate_lists(split, model_lists(model, split, K, filler))
            score = {view: result[view]["map"] for view in VIEWS}
            progress(f"  {spec.name} {params or ''}: ALL {score['ALL']:.4f} NEW {score['NEW']:.4f} "
                     f"({time.monotonic() - started:.1f} s)")
            if best is None or sum(score.values()) > sum(best[2].values()):
                best = (params, model, score)
        if best is not None:
            selection.dropped.pop(spec.name, None)
            selection.params[spec.name], fitted[spec.name], selection.scores[spec.name] = best
    if "popularity" not in fitted:
        raise ValueError("even popularity could not be fitted: " + selection.dropped.get("popularity", "no data"))
    return fitted


def validate_hybrid(split: HoldoutSplit, components: dict[str, BatchRecommender], selection: Selection,
                    earlier: list[tuple[HoldoutSplit, list[BatchRecommender]]] = (), seed: int = 0) -> dict:
    """The hybrid's validation score per view, and its rankers learned on every validation
    customer. With ``earlier`` splits (cut the same way from before the validation part, with
    the components fitted on their training part) the score is forward in time: rankers learned
    on them score the validation part, and they add examples to the published rankers. Without,
    the score is out of fold: each half of the validation customers is scored by a ranker
    learned on the other half."""
    train, rows = split.train, split.user_rows
    rankers = {}
    for view in VIEWS:
        relevant = view_relevance(split, view)
        found = labelled(candidates(train, list(components.values()), rows, PER_MODEL, view), relevant)
        extra = [labelled(candidates(s.train, members, s.user_rows, PER_MODEL, view), view_relevance(s, view))
                 for s, members in earlier]
        exclude = train.bought[rows] if view == "NEW" else None
        popular = components["popularity"].block(rows).top_n(K, exclude)
        scores = _forward_scores(found, extra, seed) if extra else _out_of_fold_scores(found, len(rows), seed)
        ranked = sp.csr_matrix((scores, (found.positions, found.cols)), shape=(len(rows), train.n_items))
        lists = filled(SparseBlock(ranked).top_n(K, exclude), popular, k=K).items
        selection.scores.setdefault("hybrid", {})[view] = list_metrics(lists, relevant, K)["map"]
        rankers[view] = fit_ranker(_joined([found, *extra]), seed)
    return rankers


def _forward_scores(found: Candidates, earlier: list[Candidates], seed: int) -> np.ndarray:
    """``found`` scored by a ranker learned on the earlier periods only, as the published rankers
    will score the weeks after training: what a ranker memorised of one period's items does not
    carry over to the next, and this score shows it."""
    return fit_ranker(_joined(earlier), seed).predict_proba(found.features)[:, 1] + 1.0


def _out_of_fold_scores(found: Candidates, n_customers: int, seed: int) -> np.ndarray:
    """``found`` scored half by half, each half of the customers by a ranker learned on the other."""
    fold = np.random.default_rng(seed).random(n_customers) < 0.5
    scores = np.zeros(len(found.cols))
    for held in (True, False):
        learn = fold[found.positions] != held
        scores[~learn] = fit_ranker(_subset(found, learn), seed).predict_proba(found.features[~learn])[:, 1] + 1.0
    return scores


def _joined(parts: list[Candidates]) -> Candidates:
    """Labelled candidates of several splits as one training set (positions are not comparable)."""
    return Candidates(np.concatenate([p.positions for p in parts]), np.concatenate([p.cols for p in parts]),
                      np.vstack([p.features for p in parts]), np.concatenate([p.labels for p in parts]))


def _subset(found: Candidates, mask: np.ndarray) -> Candidates:
    return Candidates(found.positions[mask], found.cols[mask], found.features[mask], found.labels[mask])


def guard(selection: Selection, capabilities: dict[str, frozenset]) -> None:
    """For each view, publish the model with the best validation MAP@10, and say why."""
    for view in VIEWS:
        eligible = {name: s[view] for name, s in selection.scores.items()
                    if view == "ALL" or name == "hybrid" or "discovers" in capabilities.get(name, frozenset())}
        winner = max(eligible, key=lambda name: (eligible[name], name == "hybrid"))
        selection.published[view] = winner
        runner_up = max((n for n in eligible if n != winner), key=eligible.get, default=None)
        if winner == "hybrid":
            reason = f"the hybrid ({eligible[winner]:.4f}) beat every single model"
        else:
            reason = (f"{winner} ({eligible[winner]:.4f}) beat the hybrid ({eligible.get('hybrid', float('nan')):.4f})"
                      f"; the hybrid is not published for this list")
        if runner_up is not None:
            reason += f"; next best {runner_up} ({eligible[runner_up]:.4f})"
        selection.reasons[view] = f"validation MAP@{K}, {view}: {reason}"
        log.info("%s list: %s", view, selection.reasons[view])
