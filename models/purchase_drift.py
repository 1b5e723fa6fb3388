"""Drift in what customers buy: ADWIN over the (log) value of each order.

>>> detector = PurchaseDrift()
>>> changes = [detector.update(20.0) for _ in range(300)] + [detector.update(400.0) for _ in range(300)]
>>> [round(c[0]) < round(c[1]) for c in changes if c is not None][:1]
[True]
"""

from __future__ import annotations

import math

from river import drift


class PurchaseDrift:
    def __init__(self, delta: float = 0.002):
        self.detector = drift.ADWIN(delta=delta)

    def update(self, order_value: float) -> tuple[float, float] | None:
        """Feed one order's value; on drift return (typical value before, typical value now)."""
        before = self.detector.estimation
        self.detector.update(math.log1p(max(order_value, 0.0)))
        if not self.detector.drift_detected:
            return None
        return math.expm1(before), math.expm1(self.detector.estimation)
