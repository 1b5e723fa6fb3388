"""Watches the online purchase hit-rate of the serving model and says when it has dropped.

ADWIN (river.drift) keeps a window of recent outcomes (1: the purchase
included an item from the served list, 0: it did not) and cuts it when its
two halves differ significantly. The rate after the first ``min_samples``
outcomes is the model's baseline; a cut that leaves the rate at least
``min_drop`` (relative) below the baseline is a drop worth retraining for.

>>> monitor = HitRateMonitor(min_drop=0.3)
>>> drops = [monitor.update(n % 2 == 0) for n in range(400)] + [monitor.update(n % 10 == 0) for n in range(400)]
>>> any(drops[:400]), any(drops[400:])
(False, True)
>>> monitor.last_drop[0] > monitor.last_drop[1]
True
"""

from __future__ import annotations

from river import drift


class HitRateMonitor:
    def __init__(self, min_drop: float = 0.3, delta: float = 0.002, min_samples: int = 100):
        self.min_drop = min_drop
        self.delta = delta
        self.min_samples = min_samples
        self.reset()

    def reset(self) -> None:
        """Start over, e.g. when a new model version starts serving."""
        self.detector = drift.ADWIN(delta=self.delta)
        self.seen = 0
        self.baseline: float | None = None
        self.last_drop: tuple[float, float] | None = None

    @property
    def hit_rate(self) -> float:
        return self.detector.estimation

    def update(self, hit: bool) -> bool:
        """Record one purchase outcome; True when the hit-rate has just dropped significantly."""
        self.detector.update(1.0 if hit else 0.0)
        self.seen += 1
        if self.seen == self.min_samples:
            self.baseline = self.detector.estimation
        if self.baseline is None or not self.detector.drift_detected:
            return False
        now = self.detector.estimation
        if now < self.baseline * (1 - self.min_drop):
            self.last_drop = (self.baseline, now)
            return True
        return False
