"""The dispatch rule, one copy for the live pool and the simulator: when a replica is about to
start a request, which rung of its ladder (the variant in force, then its fallbacks, most
accurate first) serves it, or whether it is dropped (answered 504) instead of served late.

A rung m is described by two times, both from the same statistic of its service samples
(`rung_times_s`): `safe_s[m]`, its service time at the ladder's quantile for that rung
(`types.safe_quantiles`) plus the mean overhead, and `slack_s[m]`, its median service time plus
the mean overhead. The request is served by the first rung whose safe time fits what is left
before its deadline, else the first whose median does, else dropped: a request that its
median service and the path's overhead would not bring in on time is more likely late than
not, and its replica time is better spent on the next one. A request that waited under
`FREE_WAIT_S` found a replica free and is always served by rung 0 (it could not have been
helped, and it keeps the service estimates honest); one whose deadline has passed never is.

The simulator's kernel calls `choose_rung` compiled (numba); the pool calls the very same
function uncompiled (`choose_rung.py_func`), so that a server never waits for a compilation.
The pool's samples are its own last replies (seeded with the profile's), the simulator's the
profile's: the statistic is one, the samples are each side's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numba
import numpy as np

FREE_WAIT_S = 0.001


@numba.njit(cache=True, nogil=True)
def choose_rung(waited_s: float, left_s: float, safe_s: np.ndarray, slack_s: np.ndarray) -> int:
    """The rung (0-based) to serve with, or -1 to drop. `waited_s`: time queued so far;
    `left_s`: time to the deadline from now (negative: passed)."""
    if left_s < 0.0:
        return -1
    if waited_s < FREE_WAIT_S:
        return 0
    for m in range(safe_s.shape[0]):
        if safe_s[m] <= left_s:
            return m
    for m in range(slack_s.shape[0]):
        if slack_s[m] <= left_s:
            return m
    return -1


def ladder(variant: str, fallbacks: Sequence[str], hopeless: bool,
           available: Callable[[str], bool] = lambda _name: True) -> tuple[str, ...]:
    """The rungs a request sent to the application may be served by, most accurate first: the
    variant in force and those of its `fallbacks` that are `available` (the simulator: profiled
    at the allocation in force) under the "hopeless" drop rule, else the variant alone."""
    if not hopeless:
        return (variant,)
    return (variant, *(f for f in fallbacks if available(f)))


def rung_times_s(samples_ms: Sequence[float] | np.ndarray, quantile: float,
                 overhead_ms: float) -> tuple[float, float]:
    """(safe_s, slack_s) of one rung from its service samples (ms): the `quantile` (0..1)
    service time and the median service time, each plus `overhead_ms`, in seconds."""
    samples = np.asarray(samples_ms, dtype=np.float64)
    tail_ms, median_ms = np.quantile(samples, [quantile, 0.5])
    return (float(tail_ms) + overhead_ms) / 1000.0, (float(median_ms) + overhead_ms) / 1000.0
