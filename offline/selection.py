"""Choosing what to publish, on validation periods cut from the training history only.

The validation period is the last one the protocol cuts; where the history allows, two earlier
periods are cut the same way before it, so that what is peculiar to one period (a holiday, a
promotion) weighs less. Every component is fitted on each period's training part at each point
of its grid and keeps its best setting by the mean over periods (the costly components choose on
the validation period alone); a component that cannot fit the data is left out with its reason.
The hybrid learns one ranker per period and averages them; each period is ranked by the other
periods' rankers, else (one period) out of fold, so the hybrid is compared on the same footing
as its components; each view keeps the ranker objective that scores best there. The guard
then publishes, for each list, the hybrid where it beats every single model by more than noise,
customer by customer, and loses no period beyond noise; else the best of the view's baseline
(popularity; for ALL, or repeat) and the single models that beat that baseline by more than noise.
Where customers (almost) never take an item twice, the recs list shows the discover list, if that
scores higher by more than noise on everything bought next.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import scipy.sparse as sp
from lightgbm import LGBMModel

from models.base import BatchRecommender, CannotFit, SparseBlock
from models.compiled_ranker import lightgbm_relevance
from models.hybrid import (CANDIDATES_PER_SLOT, OBJECTIVES, VIEWS, Candidates, ComponentScores, RankerSample,
                           candidates, component_ranks, evidence_constraints, fit_ranker, labelled)
from models.interactions import Interactions
from offline.components import COMPONENTS, LARGE_HISTORY, ComponentSpec
from offline.evaluation import HoldoutSplit, average_precisions, filled, model_lists, view_relevance
from offline.threads import on_every_core

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
K = 10
# Each component's best items that the hybrid ranks, as many as a published list holds. From
# each one's best 50, validation scores were the same within noise (Online Retail ALL 0.2113 /
# 0.2120, NEW 0.0661 / 0.0649; the simulator 0.2329 / 0.2343), and training at 1M order lines
# took 1.12x as long.
PER_MODEL = 20
SCORED_TOGETHER = 2048  # validation customers whose candidates are found in one go
# The hybrid's lead over the best single model must be this many standard errors of its
# per-customer difference (one-sided 95%): a lead within noise does not pay for a ranker that
# may carry over less well to the weeks after training than the single model it beat.
LEAD_STANDARD_ERRORS = 1.645
# Per view, the simple lists that any other model must beat by ``LEAD_STANDARD_ERRORS`` to be
# published: the better of them is the view's baseline.
BASELINES = {"ALL": ("popularity", "repeat"), "NEW": ("popularity",)}
APs = dict[str, np.ndarray]  # view -> each validation customer's AP@K, in customer order
# The APs key of a model's NEW (discovery) lists scored as its ALL lists are: against everything
# the customer bought next, as the recs list would be if it showed unbought items only.
DISCOVERY_AS_RECS = "NEW lists, ALL relevance"


@dataclass
class Selection:
    """What validation decided, as recorded in the manifest and the evaluation report."""

    protocol: str
    protocol_reason: str
    validation_users: int
    periods: int = 1  # validation periods every model was scored on (scores are their mean)
    params: dict[str, dict] = field(default_factory=dict)  # kept component -> its chosen setting
    dropped: dict[str, str] = field(default_factory=dict)  # component -> why it was left out
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> view -> mean MAP@10
    by_period: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # model -> per period: view -> MAP@10
    # model -> per period: each customer's AP@10, for the guard (not in the manifest)
    precisions: dict[str, list[APs]] = field(default_factory=dict, repr=False)
    published: dict[str, str] = field(default_factory=dict)  # view -> model
    objective_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # view -> objective -> mean MAP@10
    reasons: dict[str, str] = field(default_factory=dict)  # view -> why that model
    recs_unbought: bool = False  # the recs list shows the discover list: unbought items only

    @property
    def ranker_objective(self) -> dict[str, str]:
        """view -> the objective the hybrid's rankers kept: the best scoring one of those tried, the
        first tried on a tie (in ``OBJECTIVES`` order: a classifier's scores are probabilities,
        which read most plainly)."""
        return {view: max(scores, key=scores.get) for view, scores in self.objective_scores.items()}

    def leave_out(self, name: str, reason: str) -> None:
        """Forget ``name``'s validation results: it will not be published, for ``reason``."""
        for results in (self.params, self.scores, self.by_period, self.precisions):
            results.pop(name, None)
        self.dropped[name] = reason

    def as_dict(self) -> dict:
        return {"protocol": self.protocol, "protocol_reason": self.protocol_reason,
                "validation_users": self.validation_users, "periods": self.periods, "params": self.params,
                "dropped": self.dropped,
                "validation_map@10": self.scores, "validation_map@10_by_period": self.by_period,
                "ranker_objective": self.ranker_objective, "ranker_objective_map@10": self.objective_scores,
                "published": self.published, "recs_unbought": self.recs_unbought, "reasons": self.reasons}


def select_components(periods: list[HoldoutSplit], selection: Selection, progress: Progress,
                      history: Interactions, specs: tuple[ComponentSpec, ...] | None = None
                      ) -> tuple[list[HoldoutSplit], list[dict[str, BatchRecommender]]]:
    """Each component at its best grid point for ``history`` (the whole history, of which the
    periods may be samples), fitted on every period's training part and scored on its held-out
    part; records mean scores and drops. The cheap components choose their setting over every
    period, the costly ones on the first (the validation period). Returns the periods kept (an
    earlier period on which a kept component cannot fit is left out, with those before it) and,
    per period, the fitted components. Only ``specs`` are tried, by default every component (an
    engine validates what it can publish)."""
    periods = list(periods)
    fitted: list[dict[str, BatchRecommender]] = [{} for _ in periods]
    precisions = selection.precisions
    for spec in COMPONENTS if specs is None else specs:
        best = _best_setting(spec, periods, fitted, selection, progress, history)
        if best is None:
            continue
        params, models, scores = best
        outcomes = _on_other_periods(spec, params, models[0].fits_on_every_core, periods, fitted, len(models))
        for n, outcome in enumerate(outcomes, start=len(models)):
            if isinstance(outcome, Exception):  # an earlier period is smaller; the later ones still rank models
                log.warning("validation period %d left out: %s cannot fit it: %s", n + 1, spec.name, outcome)
                del periods[n:], fitted[n:]
                break
            models.append(outcome[0])
            scores.append(outcome[1])
        selection.dropped.pop(spec.name, None)
        selection.params[spec.name] = params
        precisions[spec.name] = scores
        for n in range(len(periods)):
            fitted[n][spec.name] = models[n]
    if "popularity" not in fitted[0]:
        raise ValueError("even popularity could not be fitted: " + selection.dropped.get("popularity", "no data"))
    selection.periods = len(periods)
    for name, scores in precisions.items():
        _record(selection, name, scores[:len(periods)])
    return periods, fitted


def _best_setting(spec: ComponentSpec, periods: list[HoldoutSplit], fitted: list[dict[str, BatchRecommender]],
                  selection: Selection, progress: Progress,
                  history: Interactions) -> tuple[dict, list[BatchRecommender], list[APs]] | None:
    """``spec``'s best point of its grid for ``history``: (params, models fitted on the periods
    tried, their scores); the cheap components are tried on every period, the costly ones on the
    first. None where no point fits: the first reason is recorded as the component's drop."""
    best = None
    for params in spec.grid_for(len(history.events)):
        started = time.monotonic()
        try:
            if (reason := spec.build(params).refuses(history)) is not None:
                raise CannotFit(reason)
            tried = periods if spec.cheap else periods[:1]
            models = [spec.build(params).fit(part.train) for part in tried]
        except Exception as exc:  # a component's failure is its own: the others go on
            reason = failure_reason(exc)
            log.warning("component %s %s left out: %s", spec.name, params, reason)
            selection.dropped.setdefault(spec.name, reason)
            continue
        scores = [_scored(part, model, fitted[n]) for n, (part, model) in enumerate(zip(tried, models))]
        mean = _mean(scores)
        progress(f"  {spec.name} {params or ''}: ALL {mean['ALL']:.4f} NEW {mean['NEW']:.4f} "
                 f"({len(scores)} period{'s' * (len(scores) > 1)}, {time.monotonic() - started:.1f} s)")
        if best is None or sum(mean.values()) > sum(_mean(best[2]).values()):
            best = (params, models, scores)
    return best


def _on_other_periods(spec: ComponentSpec, params: dict, every_core: bool, periods: list[HoldoutSplit],
                      fitted: list[dict[str, BatchRecommender]], start: int) -> Iterator:
    """The component fitted and scored on each period from ``start`` on, in order: (model,
    scores), or the exception that stopped its fit. A component that fits on one core does
    so on every period side by side, one per core."""

    def fit_and_score(period: tuple[HoldoutSplit, dict[str, BatchRecommender]]):
        part, members = period
        model = fitted_or_failure(spec.build(params), part.train)
        return model if isinstance(model, Exception) else (model, _scored(part, model, members))

    rest = list(zip(periods[start:], fitted[start:]))
    return map(fit_and_score, rest) if every_core else on_every_core(fit_and_score, rest)


def fitted_or_failure(model: BatchRecommender, data: Interactions) -> BatchRecommender | Exception:
    """``model`` fitted on ``data``, or the exception that stopped its fit: a component's failure
    is its own, and the others go on."""
    try:
        return model.fit(data)
    except Exception as exc:
        return exc


def failure_reason(exc: Exception) -> str:
    """Why a component was left out, as the log and the manifest say it."""
    return f"{type(exc).__name__}: {exc}"


def _scored(part: HoldoutSplit, model: BatchRecommender, fitted: dict[str, BatchRecommender]) -> APs:
    """Per view, each customer's AP@K of ``model``'s lists on ``part``, filled with that period's popular items."""
    lists = model_lists(model, part, K, fitted.get("popularity", model))
    return {view: average_precisions(lists[view], view_relevance(part, view), K) for view in VIEWS} | {
        DISCOVERY_AS_RECS: average_precisions(lists["NEW"], view_relevance(part, "ALL"), K)}


def _record(selection: Selection, name: str, scores: list[APs]) -> None:
    """``name``'s per-customer APs on each period, each period's MAP@K and their mean."""
    selection.precisions[name] = scores
    selection.by_period[name] = [{view: _map(period[view]) for view in VIEWS} for period in scores]
    selection.scores[name] = _mean(scores)


def _map(precisions: np.ndarray) -> float:
    return float(precisions.mean()) if len(precisions) else 0.0


def _mean(scores: list[APs]) -> dict[str, float]:
    """Per view, the mean over periods of each period's MAP@K."""
    return {view: float(np.mean([_map(s[view]) for s in scores])) for view in VIEWS}


def ranker_objectives(order_lines: int) -> tuple[str, ...]:
    """The ranker objectives worth trying on a history of ``order_lines``: on a large history,
    the first only, as with the components' settings (``offline.components``). The second
    adds 8% to the training time at 1M order lines, and where it won on a large history
    (Ta-Feng's last baskets) it led by 1% on validation."""
    return OBJECTIVES if order_lines <= LARGE_HISTORY else OBJECTIVES[:1]


def validate_hybrid(periods: list[HoldoutSplit], fitted: list[dict[str, BatchRecommender]], selection: Selection,
                    objectives: tuple[str, ...] = OBJECTIVES, seed: int = 0) -> dict[str, list[LGBMModel]]:
    """The hybrid's validation score per view, and its rankers: one learned on each period's
    customers, with the objective (of ``objectives``) that scores best on the view. The published
    hybrid averages them all, so that no one period's peculiarities (a holiday week's best
    sellers) decide its lists; on validation, each period is ranked by the average of the other
    periods' rankers, as the published ones will rank weeks they never saw: what a ranker
    memorised of one period's items and does not carry over to another counts against it. With
    one period, the score is out of fold: each half of the customers is ranked by a ranker
    learned on the other half."""
    rankers = {}
    hybrid: list[APs] = [{} for _ in periods]
    monotone = evidence_constraints(list(fitted[0].values()))
    for view, found in _labelled_candidates(periods, fitted, seed).items():
        tried = {objective: _validated_rankers(periods, fitted, found, view, (monotone, seed, objective))
                 for objective in objectives}
        selection.objective_scores[view] = {objective: float(np.mean([_map(period[view]) for period in precisions]))
                                            for objective, (_, precisions) in tried.items()}
        rankers[view], precisions = tried[selection.ranker_objective[view]]
        for n, period in enumerate(precisions):
            hybrid[n] |= period
    _record(selection, "hybrid", hybrid)
    return rankers


Learning = tuple[list[int], int, str]  # a ranker's monotone constraints, seed and objective


def _validated_rankers(periods: list[HoldoutSplit], fitted: list[dict[str, BatchRecommender]],
                       found: list[tuple[Candidates, RankerSample]], view: str,
                       learning: Learning) -> tuple[list[LGBMModel], list[APs]]:
    """``view``'s rankers learned on each period's ``found`` candidates, and each period's
    per-customer APs as the other periods' rankers rank it (out of fold with one period)."""
    by_period = [_ranker_of(sample, learning) for _, sample in found]
    precisions = []
    for n, (part, members, (shown, sample)) in enumerate(zip(periods, fitted, found)):
        others = [ranker for m, ranker in enumerate(by_period) if m != n and ranker is not None]
        # These rankers score one period's candidates once: LightGBM's own scoring costs less
        # than compiling them (``models.compiled_ranker``, for the published rankers).
        if others:
            scores = np.mean([lightgbm_relevance(ranker, shown.features) for ranker in others], axis=0) + 1.0
        else:
            scores = _out_of_fold_scores(shown, sample, len(part.test_users), learning)
        precisions.append(_hybrid_precisions(part, members, shown, scores, view))
    # Never empty: with no period's ranker, each period is scored out of fold, whose fits fail as theirs did.
    return [ranker for ranker in by_period if ranker is not None], precisions


def _ranker_of(sample: RankerSample, learning: Learning) -> LGBMModel | None:
    """A ranker learned on one period's ``sample``; None where it holds nothing to learn from."""
    try:
        return fit_ranker(sample, *learning)
    except ValueError:
        return None


def _labelled_candidates(periods: list[HoldoutSplit], fitted: list[dict[str, BatchRecommender]],
                         seed: int) -> dict[str, list[tuple[Candidates, RankerSample]]]:
    """Per view, each period's labelled candidates: those shown (ranked as published lists of K
    are, from each component's best K) and a sample of all to learn from. Both views draw on one
    scoring of the components, a chunk of customers at a time; the chunks side by side, one per
    core (periods would leave a core idle: three of them on two cores take as long as four), and
    sampled in their order, so the sample does not depend on which finished first."""
    shown = [{view: [] for view in VIEWS} for _ in periods]
    samples = [{view: RankerSample([seed, n, v]) for v, view in enumerate(VIEWS)} for n in range(len(periods))]
    chunks = [(n, start) for n, part in enumerate(periods) for start in range(0, len(part.user_rows), SCORED_TOGETHER)]

    def of_chunk(chunk: tuple[int, int]) -> dict[str, Candidates]:
        n, start = chunk
        part, members = periods[n], fitted[n]
        scores = ComponentScores(part.train, list(members.values()),
                                 part.user_rows[start:start + SCORED_TOGETHER], PER_MODEL)
        found = {}
        for view in VIEWS:
            found[view] = labelled(candidates(scores, view), view_relevance(part, view)[start:start + SCORED_TOGETHER])
            found[view].positions += start
        return found

    for (n, _), found in zip(chunks, on_every_core(of_chunk, chunks), strict=True):
        for view in VIEWS:
            ranks = component_ranks(found[view].features, len(fitted[n]))
            shown[n][view].append(found[view].subset((ranks < CANDIDATES_PER_SLOT * K).any(axis=1)))
            samples[n][view].add(found[view])
    return {view: [(Candidates.joined(period[view]), sample[view]) for period, sample in zip(shown, samples)]
            for view in VIEWS}


def _hybrid_precisions(part: HoldoutSplit, members: dict[str, BatchRecommender], found: Candidates,
                       scores: np.ndarray, view: str) -> APs:
    """Each customer's AP@K of the ``view`` lists that ``scores`` of ``found`` candidates make,
    filled with popular items (NEW lists: also as ``DISCOVERY_AS_RECS``)."""
    train, rows = part.train, part.user_rows
    exclude = train.bought[rows] if view == "NEW" else None
    popular = members["popularity"].block(rows).top_n(K, exclude)
    ranked = sp.csr_matrix((scores, (found.positions, found.cols)), shape=(len(rows), train.n_items))
    lists = filled(SparseBlock(ranked).top_n(K, exclude), popular, k=K).items
    precisions = {view: average_precisions(lists, view_relevance(part, view), K)}
    if view == "NEW":
        precisions[DISCOVERY_AS_RECS] = average_precisions(lists, view_relevance(part, "ALL"), K)
    return precisions


def _out_of_fold_scores(shown: Candidates, sample: RankerSample, n_customers: int, learning: Learning) -> np.ndarray:
    """``shown`` candidates scored half by half, each half of the customers by a ranker learned on the other."""
    fold = np.random.default_rng(learning[1]).random(n_customers) < 0.5
    scores = np.zeros(len(shown.cols))
    for held in (True, False):
        ranker = fit_ranker(sample.where(lambda found: fold[found.positions] != held), *learning)
        scored = fold[shown.positions] == held
        scores[scored] = lightgbm_relevance(ranker, shown.features[scored]) + 1.0
    return scores


def guard(selection: Selection, capabilities: dict[str, frozenset]) -> None:
    """For each view, publish the model with the best validation MAP@10, and say why: the hybrid
    where it beats every single model by ``LEAD_STANDARD_ERRORS`` and loses no period to the
    strongest by as many; else the best of the view's baseline and the single models that beat
    the baseline by as many (``_contenders``)."""
    for view in VIEWS:
        eligible = {name: s[view] for name, s in selection.scores.items()
                    if view == "ALL" or name == "hybrid" or "discovers" in capabilities.get(name, frozenset())}
        contenders, note = _contenders(selection, view, eligible)
        selection.published[view], reason = _winner(selection, view, eligible, contenders)
        selection.reasons[view] = f"validation MAP@{K}, {view}: {reason}{note}"
    _recs_unbought(selection)
    for view in VIEWS:
        log.info("%s list: %s", view, selection.reasons[view])


def _recs_unbought(selection: Selection) -> None:
    """Where customers (almost) never take an item twice (a ratings log, books, films), a recs
    slot given to an item they had is wasted: the recs list shows the discover list where, on
    validation, that list scores ahead of the recs list on everything bought next by
    ``LEAD_STANDARD_ERRORS``. Elsewhere (repeat buying) the recs list keeps what it chose."""
    recs, discover = selection.published["ALL"], selection.published["NEW"]
    if DISCOVERY_AS_RECS not in selection.precisions[discover][0]:
        return
    lead = _lead_in_standard_errors(selection, DISCOVERY_AS_RECS, discover, recs, rival_view="ALL")
    as_recs = np.mean([_map(period[DISCOVERY_AS_RECS]) for period in selection.precisions[discover]])
    selection.recs_unbought = bool(lead >= LEAD_STANDARD_ERRORS)
    if selection.recs_unbought:
        selection.published["ALL"] = discover
        selection.reasons["ALL"] += (f"; the discover list, of unbought items, scores {as_recs:.4f} on ALL, "
                                     f"{lead:.1f} standard errors ahead: the recs list shows it")


def _contenders(selection: Selection, view: str, scores: dict[str, float]) -> tuple[dict[str, float], str]:
    """Of ``scores`` (model -> mean MAP@K), the view's baseline (the better of ``BASELINES``), the
    hybrid, and the single models whose per-customer lead over the baseline is at least
    ``LEAD_STANDARD_ERRORS`` standard errors; and a note naming those ahead of it by less. With
    few validation customers, the best mean of a dozen models is largely luck, and a simple list
    carries over best to the weeks after training."""
    baselines = [name for name in BASELINES[view] if name in scores]
    if not baselines:
        return scores, ""
    baseline = max(baselines, key=scores.get)
    # The hybrid stays: ``_winner`` holds it to a lead as large over the strongest single model.
    kept = {name: score for name, score in scores.items() if name in (baseline, "hybrid")
            or _lead_in_standard_errors(selection, view, name, baseline) >= LEAD_STANDARD_ERRORS}
    within_noise = sorted((name for name in set(scores) - set(kept) if scores[name] > scores[baseline]),
                          key=scores.get, reverse=True)
    if not within_noise:
        return kept, ""
    return kept, (f"; not contending, ahead of the baseline, {baseline} ({scores[baseline]:.4f}), by under "
                  f"{LEAD_STANDARD_ERRORS} standard errors: "
                  + ", ".join(f"{name} ({scores[name]:.4f})" for name in within_noise))


def _winner(selection: Selection, view: str, scores: dict[str, float],
            contenders: dict[str, float]) -> tuple[str, str]:
    """The model to publish for ``view``, and why: the hybrid where it beats the strongest single
    model of ``scores`` (model -> mean MAP@K), contending or not, by more than noise and on every
    period; else the best single model of ``contenders``."""
    single = max((name for name in contenders if name != "hybrid"), key=contenders.get, default="hybrid")
    published = f"{single} ({scores[single]:.4f}) is published"
    if "hybrid" not in scores:
        reason = f"{single} ({scores[single]:.4f}) is the best single contender; the hybrid was left out"
        return single, reason + (f" ({selection.dropped['hybrid']})" if "hybrid" in selection.dropped else "")
    rival = max((name for name in scores if name != "hybrid"), key=scores.get, default=None)
    if rival is None:
        return "hybrid", f"the hybrid ({scores['hybrid']:.4f}) is the only model"
    if scores["hybrid"] < scores[rival]:
        return single, (f"{rival} ({scores[rival]:.4f}) beat the hybrid ({scores['hybrid']:.4f}); "
                        "the hybrid is not published for this list" + (f"; {published}" if single != rival else ""))
    lead = _lead_in_standard_errors(selection, view, "hybrid", rival)
    if lead < LEAD_STANDARD_ERRORS:
        return single, (f"{published}: the hybrid's lead ({scores['hybrid']:.4f}) over {rival} "
                        f"({scores[rival]:.4f}) is {lead:.1f} standard errors of its per-customer difference, "
                        f"under {LEAD_STANDARD_ERRORS}")
    if lost := _periods_lost(selection, view, rival):
        return single, (f"{published}: the hybrid ({scores['hybrid']:.4f}) leads {rival} by {lead:.1f} "
                        f"standard errors but lost validation period {', '.join(lost)}")
    return "hybrid", (f"the hybrid ({scores['hybrid']:.4f}) beat every single model, by {lead:.1f} standard errors "
                      f"over the next best, {rival} ({scores[rival]:.4f})")


def _periods_lost(selection: Selection, view: str, rival: str) -> list[str]:
    """The validation periods (1: the latest) that the hybrid lost to ``rival``: where the
    rival's per-customer lead is at least ``LEAD_STANDARD_ERRORS`` standard errors. A lead that
    one period carries (a holiday's best sellers) may not carry over to the weeks after
    training, which are another period: the hybrid must not lose any one beyond noise. Within
    noise (on a small shop's periods, or two lists filled alike), a period is no evidence."""
    pairs = zip(selection.precisions["hybrid"], selection.precisions[rival])
    return [f"{n} ({_map(ours[view]):.4f} against {_map(theirs[view]):.4f}, {behind:.1f} standard errors)"
            for n, (ours, theirs) in enumerate(pairs, start=1)
            if (behind := _standard_errors(theirs[view] - ours[view])) >= LEAD_STANDARD_ERRORS]


def _lead_in_standard_errors(selection: Selection, view: str, model: str, rival: str,
                             rival_view: str | None = None) -> float:
    """``model``'s mean AP lead in ``view`` over ``rival`` in ``rival_view`` (default: the same
    view) in standard errors, paired customer by customer over every validation period."""
    pairs = zip(selection.precisions[model], selection.precisions[rival])
    return _standard_errors(np.concatenate([ours[view] - theirs[rival_view or view] for ours, theirs in pairs]))


def _standard_errors(lead: np.ndarray) -> float:
    """The mean of per-customer ``lead``s in standard errors of that mean."""
    spread = lead.std(ddof=1) / np.sqrt(len(lead)) if len(lead) > 1 else 0.0
    if spread > 0:
        return float(lead.mean() / spread)
    return np.inf if len(lead) and lead.mean() > 0 else 0.0
