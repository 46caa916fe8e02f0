"""What the pool knows of each variant's service time, per (variant, threads): its own last
replies, seeded with a profile's samples, and the one statistic of `gearshift.dispatch` over
them (the rung's quantile plus overhead, and its median)."""

from __future__ import annotations

from collections import deque

from gearshift.dispatch import rung_times_s
from gearshift.engine.pool_types import PoolSettings

RECENT = 16
"""Replies kept per (variant, threads): a window short enough to follow a machine that slows."""


class ServiceStats:
    def __init__(self, settings: PoolSettings) -> None:
        self._settings = settings
        self._recent: dict[tuple[str, int], deque[float]] = {}

    def retune(self, settings: PoolSettings) -> None:
        """Go on with `settings` (a new overhead, say), keeping the replies recorded."""
        self._settings = settings

    def record(self, variant: str, threads: int, service_ms: float) -> None:
        """A reply's service time (ms)."""
        self._recent.setdefault((variant, threads), deque(maxlen=RECENT)).append(service_ms)

    def rung_times_s(self, variant: str, threads: int, quantile: float,
                     overhead_ms: float) -> tuple[float, float]:
        """`dispatch.rung_times_s` of `variant` from its last replies, else the settings'
        samples (a profile's), else its expected time, each with `overhead_ms`; under a drop
        rule other than "hopeless", (0, 0): only an expired request is dropped."""
        s = self._settings
        if s.drop != "hopeless":
            return 0.0, 0.0
        samples = self._recent.get((variant, threads)) or s.service_samples_ms.get(
            (variant, threads))
        if samples:
            return rung_times_s(samples, quantile, overhead_ms)
        expected_s = (s.expected_service_ms.get((variant, threads), 0.0) + overhead_ms) / 1000.0
        return expected_s, expected_s
