"""The dispatch rule, one copy for the live pool and the simulator: when a replica is about to
start a request, which rung of its ladder (the variant in force, then its fallbacks, most
accurate first) serves it, or whether it is dropped (answered 504) instead of served late.

A rung m is described by two times, both from the same statistic of its service samples
(`rung_times_s`): `safe_s[m]`, its service time at the ladder's quantile for that rung
(`types.safe_quantiles`) plus the path's overhead, and `slack_s[m]`, its median service time
plus that overhead: the busy mean (`Profile.dispatch_overhead_ms`), or while a path-bound
entry is in force, the path's median cost at the offered rate (`PathOverhead`). The request
is served by the first rung whose safe time fits what is left before its deadline, else the
first whose median does, else dropped: a request that its median service and the path's
overhead would not bring in on time is more likely late than not, and its replica time is
better spent on the next one.

The queue behind it has a say: a rung is open to the request only if the requests waiting
behind it could still be answered in time by the lightest rung at its median: the first of
them and the last, each after the head's and the others' service shared over the R replicas
(one that would be late even were the head served by the lightest rung does not count). A
heavy variant in force meeting a burst (an idle server's choice, a load step inside a period)
thus serves the burst's head with a light rung instead of making ten requests behind it late
(live, a cold start into 1.1 x capacity at 250 ms: 14 drops in the first second against the
static variant's 2). The queue's own arrival rate has a say too: the requests waiting, over
the time between the head's arrival and the last one's, against what the lightest rung drains
(rho). At rho >= 1 only the lightest rung is open, since what a heavier one adds delays every
later request for as long as the load lasts (simulated, a step from 0.2 x to 1.1 x capacity
caught on ResNet-101 left a backlog of 24 that was shed over the next 8 s); below it, the last
request behind keeps, besides, a stationary queue's wait at that rho as headroom, against the
bursts a busy queue meets: not its mean but the wait exceeded with probability `WAIT_RISK`,
ln(rho / WAIT_RISK) / (1 - rho) lightest services per replica (the M/M/1 tail, the replicas as
one server R x as fast). At light load that headroom is a few ms and changes nothing. A request
that waited under `FREE_WAIT_S` found a replica free and is always served by the variant in
force, or by an upgrade (below), never by a fallback or dropped (it could not have been helped,
and it keeps the service estimates honest); one whose deadline has passed never is.

Upgrades: a decision may carry more accurate variants than its own (`Decision.upgrades`; the
ladder then starts with them, and `base` is the variant in force). A request that finds a
replica free with nothing queued behind it is served by the most accurate of them whose tail
time fits what is left, if a request arriving at that moment would still be answered in time
by the variant in force at its tail after waiting its share of the upgrade's service (that
service over the R replicas), and if the offered rate as the request arrived (the higher of
the last second's and the last quarter second's, `UPGRADE_WINDOW_S`, its own arrival
included) times that service stays within `UPGRADE_LOAD` of the replicas: a lull inside a
period then serves what a lighter load would, and a busy server is left to the choice in
force. In the simulator on the ResNet pool it gains most at 75 ms, where the table keeps a
light variant for the bursts (BENCHMARKS.md, "Upgrades at dispatch"). An upgrade whose
samples do not resolve the quantile it is judged at is not open (`resolves`,
`close_unresolved_upgrades`).

The simulator's kernel calls `choose_rung` compiled (numba); the pool calls the very same
function uncompiled (`choose_rung.py_func`), so that a server never waits for a compilation.
The pool's samples are its own last replies, or for a variant with few of them the profile's
scaled by how much slower than profiled the host serves now (`engine.service_stats`); the
simulator's are the profile's it serves with: the statistic is one, the samples are each
side's own. (numba caches the compiled kernel on disk keyed by `sim/kernel.py`'s own
timestamp: after editing this rule, delete the cache, `find src -name '*.nb[ci]' -delete`,
or the simulator keeps the old one.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from gearshift.types import ServedAs

FREE_WAIT_S = 0.001
RATE_WINDOW_S = 1.0
"""The offered rate a path-bound entry's overhead is read at: the arrivals of the last second."""
RATE_MIN_BEHIND = 3
UPGRADE_LOAD = 0.5
"""An upgrade is open while the offered rate times its service time is at most this many of
the replicas: the load the upgrade would be were every request served by it. Measured in the
simulator at 0.5 and 0.8; 0.8 gained more on the mean and lost more on the worst paths."""
UPGRADE_WINDOW_S = 0.25
"""The upgrades' offered rate is the higher of the arrivals of the last `RATE_WINDOW_S` and
of the last this many seconds, per second: a step in the load shows in a quarter of a second,
before the replicas take many heavy requests into it (simulated, a path with a step to 1.1 x
ResNet-18's capacity lost 0.011 to the best static variant at 1,200 ms with the last second's
rate alone, 0.0004 with this)."""


WAIT_RISK = 0.05
"""The chance the dispatch rule accepts that a heavier rung's time makes the queue behind late:
the headroom it leaves the last request is the queue's wait exceeded this rarely. A heavier
rung gains its one request a few points of accuracy and, where the queue then reaches its
deadline, costs the requests behind it the whole rung's extra time over the lightest's (on the
ResNet ladder ResNet-152 for ResNet-18 gains 0.086 and costs five answers at 0.70): it pays
where that happens 2-8 % of the time. With the mean wait (a risk of 30-37 % at rho 0.5-0.9), a
flash crowd's first 0.2 s took two ResNet-152 services on a queue at rho 0.87, a delay the
load beyond every capacity then never recovered (simulated at 600 ms, 16 more late than
static ResNet-18 in the next half second)."""


UPGRADE_RESOLUTION = 0.5
"""An upgrade is open only if the chance that all its n samples lie below the quantile it is
judged at, quantile ** n, is at most this: an upgrade risks a whole answer for a little
accuracy, and its tail read off too few samples is their largest. ResNet-50 to ResNet-101
gains 0.013 and wants 0.983 on time; read off 25 profiled samples (0.983 ** 25 = 0.65), live,
2 of 18 such upgrades were late at 250 ms, served in 251-265 ms against a profiled maximum of
189 (simulated, refusing them costs 0.0003 at 300 ms)."""


def resolves(quantile: float, samples: int) -> bool:
    """Whether `samples` service times resolve their `quantile` (0..1) for an upgrade
    (`UPGRADE_RESOLUTION`)."""
    return samples > 0 and quantile ** samples <= UPGRADE_RESOLUTION


def close_unresolved_upgrades(safe_s: np.ndarray, quantiles: Sequence[float],
                              samples: Sequence[int], base: int) -> np.ndarray:
    """`safe_s` with each upgrade (a rung before `base`) whose `samples[m]` do not resolve its
    `quantiles[m]` at infinity, so that `choose_rung` never takes it (a copy if any is)."""
    closed = [m for m in range(base) if not resolves(quantiles[m], samples[m])]
    if not closed:
        return safe_s
    out = safe_s.copy()
    out[closed] = math.inf
    return out


@numba.njit(cache=True, nogil=True)
def choose_rung(waited_s: float, left_s: float, safe_s: np.ndarray, slack_s: np.ndarray,
                behind: int = 0, first_left_s: float = math.inf, last_left_s: float = math.inf,
                replicas: int = 1, overhead_s: float = 0.0, span_s: float = math.inf,
                base: int = 0, rate_rps: float = 0.0) -> int:
    """The rung (0-based) to serve with, or -1 to drop. `waited_s`: time queued so far;
    `left_s`: time to the deadline from now (negative: passed). The queue behind: `behind`
    requests, the first and the last with `first_left_s` and `last_left_s` to their deadlines;
    `replicas` serve the queue; `overhead_s` is the part of each rung's times that does not
    occupy a replica; `span_s`: from the head's arrival to the last one's behind it. `base`:
    the rung of the variant in force (those before it are upgrades); `rate_rps`: the offered
    rate when the request arrived (the upgrades' load check).

    One function, calling no other compiled one: the pool runs it as plain Python
    (`choose_rung.py_func`), and a compiled callee would be compiled there, in the serving
    path, at its first call with each new argument type."""
    if left_s < 0.0:
        return -1
    if waited_s < FREE_WAIT_S:
        # found a replica free: the most accurate upgrade that fits, if nothing waits behind
        if behind == 0:
            for m in range(base):
                busy = safe_s[m] - overhead_s
                if (safe_s[m] <= left_s and busy / replicas + safe_s[base] <= left_s
                        and rate_rps * busy <= UPGRADE_LOAD * replicas):
                    return m
        return base
    # the first open rung: the most accurate that leaves the first and the last request
    # behind time to be answered by the lightest rung at its median, each that the lightest
    # rung for the head would leave it (one late whatever the head takes does not count)
    light: int = slack_s.shape[0] - 1
    top = base
    if behind > 0 and light > base:
        light_busy = slack_s[light] - overhead_s
        others_s = (behind - 1) * light_busy
        first_counts = light_busy / replicas + slack_s[light] <= first_left_s
        last_counts = (light_busy + others_s) / replicas + slack_s[light] <= last_left_s
        top = light
        # the queue's own arrival rate, against what the lightest rung drains: at or past it
        # (rho >= 1) any heavier service delays every later request for good; below it, the
        # last request keeps a stationary queue's wait at its 1 - WAIT_RISK quantile besides
        rho = 0.0
        if behind >= RATE_MIN_BEHIND:
            rho = behind * light_busy / (replicas * span_s) if span_s > 0.0 else math.inf
        headroom = (max(0.0, math.log(rho / WAIT_RISK)) / (1.0 - rho) * light_busy / replicas
                    if 0.0 < rho < 1.0 else 0.0)
        for m in range(base, light if rho < 1.0 else base):
            busy = slack_s[m] - overhead_s
            if first_counts and busy / replicas + slack_s[light] > first_left_s:
                continue
            if last_counts and ((busy + others_s) / replicas + slack_s[light] + headroom
                                > last_left_s):
                continue
            top = m
            break
    for m in range(top, safe_s.shape[0]):
        if safe_s[m] <= left_s:
            return m
    for m in range(top, slack_s.shape[0]):
        if slack_s[m] <= left_s:
            return m
    return -1


@dataclass(frozen=True)
class PathOverhead:
    """The overhead the rule counts while a path-bound entry (a model far faster than the HTTP
    path, `AllocationProfile.path_bound`) is in force: the path's median cost at the load on
    the cores, `median_ms[k]` at `utilization[k]` (ascending, from `Profile.overhead_by_load`),
    each request per second adding `load_per_rps` (`Profile.utilization`). Such a path's cost
    climbs steeply with the load, from 1-3 ms to 20 and more past the HTTP capacity: one
    figure for every load, the mean of a calibration's runs near that capacity, counted 8-9
    ms against every waiting request (live, the Fashion-MNIST pool at 800 requests/s and a 10
    ms deadline: a tenth of the requests dropped with 8-9 ms left, where the path took
    1.3-2.8). The median, as the rule asks whether a request is more likely late than not:
    at 0.7-0.8 of the cores a level's mean is its tail's (5.2 ms against a median of 2.5;
    live, the mean dropped 18 % of static fnet-l's requests, of whose served ones 0.4 % were
    late)."""

    load_per_rps: float
    utilization: tuple[float, ...]
    median_ms: tuple[float, ...]

    def at_each(self, rate_rps: np.ndarray) -> np.ndarray:
        """The overhead (ms) at each of `rate_rps`: linear between the measured loads, the
        nearest one's beyond them."""
        out: np.ndarray = np.interp(rate_rps * self.load_per_rps, self.utilization,
                                    self.median_ms)
        return out

    def at(self, rate_rps: float) -> float:
        """`at_each` of one rate."""
        return float(self.at_each(np.asarray(rate_rps)))


def ladder(variant: str, fallbacks: Sequence[str], hopeless: bool,
           available: Callable[[str], bool] = lambda _name: True,
           upgrades: Sequence[str] = ()) -> tuple[tuple[str, ...], int]:
    """The rungs a request sent to the application may be served by, most accurate first, and
    the variant in force's index among them: under the "hopeless" drop rule, those of its
    `upgrades`, the variant and those of its `fallbacks` that are `available` (the simulator:
    profiled at the allocation in force), else the variant alone."""
    if not hopeless:
        return (variant,), 0
    ups = tuple(u for u in upgrades if available(u))
    return (*ups, variant, *(f for f in fallbacks if available(f))), len(ups)


def served_as(rung: int, base: int) -> ServedAs:
    """What rung `rung` of a ladder is to the request it serves, the variant in force being
    rung `base` (`ladder`): it, an upgrade (before it) or a fallback (after it)."""
    return "in_force" if rung == base else "upgrade" if rung < base else "fallback"


def rung_times_s(samples_ms: Sequence[float] | np.ndarray, quantile: float,
                 overhead_ms: float) -> tuple[float, float]:
    """(safe_s, slack_s) of one rung from its service samples (ms): the `quantile` (0..1)
    service time and the median service time, each plus `overhead_ms`, in seconds."""
    if isinstance(samples_ms, np.ndarray) or len(samples_ms) > SMALL:
        tail_ms, median_ms = (float(x) for x in np.quantile(
            np.asarray(samples_ms, dtype=np.float64), [quantile, 0.5]))
    else:  # the pool's few last replies, at every dispatch: np.quantile costs ~30 us
        xs = sorted(samples_ms)
        tail_ms, median_ms = _linear_quantile(xs, quantile), _linear_quantile(xs, 0.5)
    return (tail_ms + overhead_ms) / 1000.0, (median_ms + overhead_ms) / 1000.0


SMALL = 64
"""Sample lists up to this long are summarised in plain Python (`_linear_quantile`)."""


def _linear_quantile(xs: list[float], q: float) -> float:
    """np.quantile's default ("linear") of sorted `xs`, to the last bit: the same lerp."""
    pos = q * (len(xs) - 1)
    i = min(int(pos), len(xs) - 1)
    j = min(i + 1, len(xs) - 1)
    a, b, t = float(xs[i]), float(xs[j]), pos - i
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t
