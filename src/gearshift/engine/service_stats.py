"""What the pool knows of each variant's service time, per (variant, threads): its own last
replies, seeded with a profile's samples, and the one statistic of `gearshift.dispatch` over
them (the rung's quantile plus overhead, and its median).

A (variant, threads) with `OWN_REPLIES` replies of its own is judged by them. One with fewer,
as an upgrade or a fallback that serves now and then, by the profile's samples scaled by how
much slower than them the host serves now (`speed`): the median of the replies over the
profile's median, over the (variant, threads) that have enough replies. A host that serves
the variant in force 1.05-1.09 x slower than calibrated serves the others so too, and an
upgrade judged by the profile's times alone fits with no margin to spare (live, `mmpp-5` at
250 ms: ResNet-152 2x1 taken as an upgrade with its profiled 242 ms tail, served in 260 ms,
late, while ResNet-50 in force served at 87 ms against 80 profiled). Never below 1: a host
faster than its profile keeps the profile's times, as an upgrade risks a whole answer for a
little accuracy."""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

from gearshift.dispatch import rung_times_s
from gearshift.engine.pool_types import PoolSettings

RECENT = 16
"""Replies kept per (variant, threads): a window short enough to follow a machine that slows."""
OWN_REPLIES = 8
"""Replies of its own before a (variant, threads) with profile samples is judged by them alone,
and counts towards the host's speed."""
MAX_SPEED = 2.0
"""The most the profile's samples are scaled by (the table controller's largest load factor)."""


class ServiceStats:
    def __init__(self, settings: PoolSettings) -> None:
        self._recent: dict[tuple[str, int], deque[float]] = {}
        self._speed: float | None = None  # cached; None: to compute again
        self.retune(settings)

    def retune(self, settings: PoolSettings) -> None:
        """Go on with `settings` (a new overhead, say), keeping the replies recorded."""
        self._settings = settings
        self._profiled_median = {k: statistics.median(v)
                                 for k, v in settings.service_samples_ms.items() if v}
        self._speed = None

    def record(self, variant: str, threads: int, service_ms: float) -> None:
        """A reply's service time (ms)."""
        self._recent.setdefault((variant, threads), deque(maxlen=RECENT)).append(service_ms)
        self._speed = None

    def speed(self) -> float:
        """How much slower than its profile the host serves now, at least 1 and at most
        `MAX_SPEED` (module docstring): each (variant, threads) with `OWN_REPLIES` replies and
        profile samples weighs by its replies."""
        if self._speed is None:
            ratios = [(statistics.median(own) / self._profiled_median[k], len(own))
                      for k, own in self._recent.items()
                      if len(own) >= OWN_REPLIES and self._profiled_median.get(k, 0.0) > 0]
            total = sum(n for _, n in ratios)
            mean = sum(r * n for r, n in ratios) / total if total else 1.0
            self._speed = min(max(mean, 1.0), MAX_SPEED)
        return self._speed

    def sample_count(self, variant: str, threads: int) -> int:
        """How many samples `rung_times_s` reads for `variant` (0: its expected time alone)."""
        return len(self._samples((variant, threads))[0])

    def rung_times_s(self, variant: str, threads: int, quantile: float,
                     overhead_ms: float) -> tuple[float, float]:
        """`dispatch.rung_times_s` of `variant` over `_samples`, else from its expected time x
        `speed`, each with `overhead_ms`; under a drop rule other than "hopeless", (0, 0):
        only an expired request is dropped."""
        s = self._settings
        if s.drop != "hopeless":
            return 0.0, 0.0
        samples, scale = self._samples((variant, threads))
        if samples:
            return rung_times_s([x * scale for x in samples] if scale != 1.0 else samples,
                                quantile, overhead_ms)
        expected_s = (s.expected_service_ms.get((variant, threads), 0.0) * self.speed()
                      + overhead_ms) / 1000.0
        return expected_s, expected_s

    def _samples(self, key: tuple[str, int]) -> tuple[Sequence[float], float]:
        """The service samples (ms) a (variant, threads) is judged by and the factor they are
        scaled by: its last replies if it has `OWN_REPLIES` of them, or replies and no
        profile samples; else the profile's samples x `speed`; else none."""
        own = self._recent.get(key)
        profiled = self._settings.service_samples_ms.get(key)
        if own and (len(own) >= OWN_REPLIES or not profiled):
            return own, 1.0
        return profiled or (), self.speed()
