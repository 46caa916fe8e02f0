"""The offered rate the pool reads at dispatch: the requests enqueued over the last
`RATE_WINDOW_S` (a path-bound entry's cost is read at it) and the higher of that and the
last `UPGRADE_WINDOW_S`'s, per second (an upgrade is checked by it; the simulator's
`sim.sampling.upgrade_rate_rps`).

Each window keeps its own enqueue times, forgotten from the oldest as they leave it, so that a
request's reading costs what the times that left since the last one cost. Counting the last
quarter second by a walk back over the last second's times cost every request a quarter of
the offered rate in steps: at the Fashion-MNIST pool's 1,300 requests/s, 325 per request
(BENCHMARKS.md, "The offered rate at dispatch")."""

from __future__ import annotations

from collections import deque

from gearshift.dispatch import RATE_WINDOW_S, UPGRADE_WINDOW_S


class OfferedRate:
    """Enqueue times (s, non-decreasing) over the two windows."""

    def __init__(self) -> None:
        self._second: deque[float] = deque()  # within the last RATE_WINDOW_S
        self._quarter: deque[float] = deque()  # within the last UPGRADE_WINDOW_S

    def record(self, t: float) -> None:
        """A request enqueued at `t`."""
        self._second.append(t)
        self._quarter.append(t)

    def per_second(self, now: float) -> float:
        """Requests per second enqueued in the last `RATE_WINDOW_S` up to `now`."""
        _forget(self._second, now - RATE_WINDOW_S)
        return len(self._second) / RATE_WINDOW_S

    def for_upgrades(self, now: float) -> float:
        """The higher of `per_second` and the requests per second enqueued in the last
        `UPGRADE_WINDOW_S` up to `now`."""
        _forget(self._quarter, now - UPGRADE_WINDOW_S)
        return max(self.per_second(now), len(self._quarter) / UPGRADE_WINDOW_S)


def _forget(times: deque[float], cutoff: float) -> None:
    """Drop the times at or before `cutoff` (the oldest first)."""
    while times and times[0] <= cutoff:
        times.popleft()
