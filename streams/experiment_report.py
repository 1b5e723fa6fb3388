"""An experiment's outcome per arm, with 95% confidence intervals and tests against the first arm.

* exposures: customers shown at least one list of their arm, and the lists written;
* click-through: share of lists with a credited click (Wilson interval; chi-squared test);
* purchase hit-rate: share of purchases with an item from the list shown (Wilson; chi-squared);
* revenue per exposed customer, zeros included (t interval; Welch's t-test).

An arm "wins" a metric when it differs from the first arm with p < ALPHA; the report names
the better one. Statistics come from scipy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from streams.experiments import Experiment

ALPHA = 0.05
METRICS = ("click_through", "hit_rate", "revenue_per_customer")


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    p_value: float | None = None  # against the first arm; None for the first arm itself


@dataclass
class ArmResult:
    arm: str
    version: str
    customers: int
    lists: int
    click_through: Estimate
    hit_rate: Estimate
    revenue_per_customer: Estimate


def _proportion(successes: int, trials: int) -> Estimate:
    if trials == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    interval = stats.binomtest(successes, trials).proportion_ci(0.95, method="wilson")
    return Estimate(successes / trials, float(interval.low), float(interval.high))


def _mean(values: np.ndarray) -> Estimate:
    """Mean revenue with a t interval; revenue is never negative, so neither is the interval."""
    if len(values) < 2:
        mean = float(values.mean()) if len(values) else float("nan")
        return Estimate(mean, float("nan"), float("nan"))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    mean = float(values.mean())
    return Estimate(mean, max(0.0, float(low)) if np.isfinite(low) else mean, float(high) if np.isfinite(high) else mean)


def _proportions_differ(a: tuple[int, int], b: tuple[int, int]) -> float | None:
    """p-value of a chi-squared test that two shares (successes, trials) are equal."""
    table = np.array([[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]])
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return None
    return float(stats.chi2_contingency(table).pvalue)


def _means_differ(a: np.ndarray, b: np.ndarray) -> float | None:
    """p-value of Welch's t-test that two means are equal; None where it is undefined."""
    if len(a) < 2 or len(b) < 2:
        return None
    if a.var() == 0 and b.var() == 0:  # constant samples: equal, or different beyond any test
        return 1.0 if a.mean() == b.mean() else None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def arm_results(experiment: Experiment, outcomes: dict[str, dict[str, float]],
                versions: dict[str, str] | None = None) -> list[ArmResult]:
    """Per arm, from the per-customer outcomes (``streams.experiments.read_outcomes``)."""
    exposed = outcomes["lists"]
    by_arm: dict[str, list[str]] = {arm.name: [] for arm in experiment.arms}
    for user in exposed:
        by_arm[experiment.arm_of(user).name].append(user)
    counts, revenues = {}, {}
    for name, users in by_arm.items():
        total = {outcome: int(sum(values.get(u, 0) for u in users)) for outcome, values in outcomes.items()
                 if outcome != "revenue"}
        counts[name] = total
        revenues[name] = np.array([outcomes["revenue"].get(u, 0.0) for u in users])
    control = experiment.arms[0].name
    results = []
    for arm in experiment.arms:
        c, first = counts[arm.name], counts[control]
        ctr, hits = _proportion(c["clicked"], c["lists"]), _proportion(c["hits"], c["purchases"])
        revenue = _mean(revenues[arm.name])
        if arm.name != control:
            ctr.p_value = _proportions_differ((first["clicked"], first["lists"]), (c["clicked"], c["lists"]))
            hits.p_value = _proportions_differ((first["hits"], first["purchases"]), (c["hits"], c["purchases"]))
            revenue.p_value = _means_differ(revenues[control], revenues[arm.name])
        results.append(ArmResult(arm.name, (versions or {}).get(arm.name, arm.version), len(by_arm[arm.name]),
                                 c["lists"], ctr, hits, revenue))
    return results


def winners(results: list[ArmResult]) -> dict[str, str | None]:
    """Per metric, the arm that significantly beats the first arm (or that the first arm beats), else None."""
    control = results[0]
    found = {}
    for metric in METRICS:
        best = None
        for result in results[1:]:
            estimate = getattr(result, metric)
            if estimate.p_value is not None and estimate.p_value < ALPHA:
                better = result if estimate.value > getattr(control, metric).value else control
                if best is None or getattr(better, metric).value > getattr(best, metric).value:
                    best = better
        found[metric] = best.arm if best is not None else None
    return found


def report(experiment: Experiment, outcomes: dict[str, dict[str, float]]) -> dict:
    """The report as JSON-ready values (no NaN: an estimate without data is null)."""
    results = arm_results(experiment, outcomes)
    return {"experiment": experiment.name, "running": experiment.running, "started_at": experiment.started_at,
            "stopped_at": experiment.stopped_at, "alpha": ALPHA, "arms": [_no_nan(asdict(r)) for r in results],
            "winners": winners(results)}


def _no_nan(value):
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    return None if isinstance(value, float) and not np.isfinite(value) else value
