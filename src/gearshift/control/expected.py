"""gearshift's table controller: the rate over the longest recent window without a change, every
candidate of the planner's grid scored by its expected effective accuracy over the estimate's
uncertainty less a multiple of its spread there, at the load the host's live misses say it acts
as if it had, the choice in force kept within noise. Pure: `decide(observation, state) ->
(decision, state)`, as every policy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gearshift.planning.planner import tie_order
from gearshift.planning.settings import PlanSettings
from gearshift.planning.table import GridPoint, PolicyTable
from gearshift.policy import Observation
from gearshift.profiling.profile import Profile
from gearshift.types import Allocation, Decision

WINDOWS = (1, 2, 4, 8, 16)
"""Windows (periods) the rate estimate may span: up to 8 s at the default 0.5 s period."""


def window_rate(counts: Sequence[int], period_s: float, z: float) -> tuple[float, float]:
    """(rate_rps, window_s): arrivals per second over the longest recent window of `WINDOWS`
    periods (counts newest last) in which the load has not changed: the last one and the last
    two periods each within `z` Poisson standard deviations of what the window's older
    periods predict, and its two halves within `z` of each other (a change inside the window,
    not only at its end). A steady load is estimated over up to 16 periods (at 7 requests/s
    and 0.5 s periods: sd 0.9 requests/s instead of 3.7 from one period); a step shows as a
    count far off the older periods' rate and shortens the window to the periods after it at
    once."""
    if not counts:
        return math.nan, 0.0
    best = (counts[-1] / period_s, period_s)
    for w in WINDOWS[1:]:
        if w > len(counts):
            break
        window = counts[-w:]
        for j in ((1, 2) if w > 2 else (1,)):
            older = sum(window[:-j])
            expected = older / (w - j) * j
            if abs(sum(window[-j:]) - expected) > z * math.sqrt(max(expected, 1.0)):
                return best
        first, second = sum(window[:w // 2]), sum(window[w // 2:])
        if abs(second - first) > z * math.sqrt(max(first + second, 1)):
            return best
        best = (sum(window) / (w * period_s), w * period_s)
    return best


def window_noise(rate_rps: float, window_s: float) -> float:
    """The Poisson sd (requests/s) of a rate read over `window_s` (at least one request's)."""
    return math.sqrt(max(rate_rps * window_s, 1.0)) / window_s


def excess_backlog(backlog: int, steady: float) -> float:
    """The requests of `backlog` beyond what the queue holds in steady state (`steady`) by
    more than its Poisson sd: a queue a burst or a heavier variant left behind."""
    return max(0.0, backlog - steady - math.sqrt(steady + 1.0))


def since_first_request(counts: Sequence[int]) -> tuple[int, ...]:
    """Per-period arrival `counts` (oldest first) from the first period with a request."""
    first = next((i for i, c in enumerate(counts) if c > 0), len(counts))
    return tuple(counts[first:])


ONSET_EVIDENCE = 2.0
"""How much likelier (log) an onset inside the period must make its arrivals than a change at
its start: about 7 x, so that a noisy count on a varying load is not read as a step."""


def onset_rate(parts: Sequence[int], period_s: float, older_rps: float
               ) -> tuple[float, float] | None:
    """(rate_rps, window_s) after a load that changed inside the last period, from its arrivals
    in equal consecutive `parts` (oldest first): the onset at the part boundary j that best
    explains them (Poisson likelihood of each part before j at `older_rps`, the rate before
    the change, and of each part after j at their mean; the later onset on a tie), the rate
    over the parts after it. None if there are no parts or the best onset is the period's
    start. Counted over the whole period, a step to 40 requests/s halfway through reads as 20
    (the first decision after a step then plans for half the load; live, a step into 1.1 x
    ResNet-18's capacity met ResNet-50 for a period and dropped 12 requests against static
    ResNet-18's 2)."""
    k = len(parts)
    if k < 2 or sum(parts) == 0:
        return None
    part_s = period_s / k
    before_mean = max(older_rps, 0.0) * part_s
    best_j, best, whole = 0, -math.inf, -math.inf
    for j in range(k):
        after = parts[j:]
        if sum(after) == 0:
            break
        after_mean = sum(after) / len(after)
        ll = (sum(_log_poisson(n, before_mean) for n in parts[:j])
              + sum(_log_poisson(n, after_mean) for n in after))
        if j == 0:
            whole = ll
        if ll >= best - 1e-9:
            best_j, best = j, ll
    if best_j == 0 or best - whole < ONSET_EVIDENCE:
        return None
    span_s = (k - best_j) * part_s
    return sum(parts[best_j:]) / span_s, span_s


def _log_poisson(n: int, mean: float) -> float:
    if mean <= 0.0:
        return 0.0 if n == 0 else -math.inf
    return n * math.log(mean) - mean - math.lgamma(n + 1)


LOAD_FACTORS = (1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0)
"""How much heavier than its rate the load may act on the host (`ExpectedTablePolicy`): a
profile that flatters every candidate by 20 % makes a load act as 1.2 x itself."""


@dataclass(frozen=True)
class WindowState:
    """`counts`: arrivals of the last periods (newest last, at most max(WINDOWS)).
    `rate_rps`, `window_s`: the rate estimate and the window it spans. `choice`: index of the
    candidate in force (-1 before the first period). `expected`: its score at the estimate
    (expected effective accuracy less the risk term). `resolved`, `missed`: the requests
    answered or dropped while a candidate had been in force for a deadline and a period, and
    those of them late or dropped; `planned[k]`: the misses the plans of the candidates in
    force expected of them were the load `LOAD_FACTORS[k]` x the rate (decaying sums,
    `ExpectedTablePolicy.memory`). `load_factor`: the one of `LOAD_FACTORS` the scores were
    read at. `in_force`: the (variant, R, T) the host last reported in force, and `since_s`
    the host time it first did. `drift`, `drift_periods`, `drift_weight`: the load's measured
    drift (`ExpectedTablePolicy._drift`). `core_ms`, `profiled_core_ms`, `profiled_core_var`,
    `service_count`: the core time the inferences' requests took (measured service, the
    front end's profiled share), its profiled mean and variance, and their count (decaying
    sums); `speed`: how much slower than profiled the host serves
    (`ExpectedTablePolicy._speed`)."""

    counts: tuple[int, ...] = ()
    rate_rps: float = math.nan
    window_s: float = 0.0
    choice: int = -1
    expected: float = math.nan
    resolved: float = 0.0
    missed: float = 0.0
    planned: tuple[float, ...] = ()
    load_factor: float = 1.0
    in_force: tuple[str, int, int] = ("", 0, 0)
    since_s: float = 0.0
    drift: float = 0.0
    drift_periods: float = 0.0
    drift_weight: float = 0.0
    core_ms: float = 0.0
    profiled_core_ms: float = 0.0
    profiled_core_var: float = 0.0
    service_count: float = 0.0
    speed: float = 1.0

    @property
    def slowdown(self) -> float:
        """`host_slowdown` of this state's load factor and speed."""
        return host_slowdown(self.load_factor, self.speed)


def host_slowdown(load_factor: float, speed: float) -> float:
    """How much slower than profiled the host acts: its misses' load factor or its service
    times' speed, whichever says more (at most the largest of `LOAD_FACTORS`)."""
    return max(load_factor, min(speed, LOAD_FACTORS[-1]))


@dataclass(frozen=True)
class GridScores:
    """The planner's grid as arrays: `keys[c]` = (variant, R, T) of candidate c, `rates_rps`
    the grid's loads, `score[c, i]` candidate c's effective accuracy at load i, `ok[c, i]`
    whether it may be chosen there (its fallbacks answer at most the table's
    `max_fallback_share` of its requests, as the planner's `bursts_only`)."""

    keys: tuple[tuple[str, int, int], ...]
    rates_rps: np.ndarray
    score: np.ndarray
    ok: np.ndarray
    on_time: np.ndarray  # [c, i]: the fraction of requests on time the plan expects
    sojourn_s: np.ndarray  # [c, i]: a request's time in the system the plan expects (the
    # mean of its p50 and p99 latency, s)

    @classmethod
    def from_grid(cls, grid: Sequence[GridPoint], max_fallback_share: float) -> GridScores:
        keys = tuple(dict.fromkeys((p.variant, p.replicas, p.threads) for p in grid))
        rates = np.array(sorted({p.rate_rps for p in grid}))
        score = np.zeros((len(keys), len(rates)))
        on_time = np.ones((len(keys), len(rates)))
        ok = np.zeros((len(keys), len(rates)), dtype=bool)
        sojourn = np.zeros((len(keys), len(rates)))
        col = {r: i for i, r in enumerate(rates.tolist())}
        row = {k: i for i, k in enumerate(keys)}
        for p in grid:
            at = row[(p.variant, p.replicas, p.threads)], col[p.rate_rps]
            score[at] = p.effective_accuracy
            on_time[at] = p.p_on_time
            ok[at] = p.fallback_share <= max_fallback_share
            sojourn[at] = (p.p50_ms + p.p99_ms) / 2000.0
        return cls(keys, rates, score, ok, on_time, sojourn)

    def expected(self, rate_rps: float, sd_rps: float, risk: float = 0.0) -> np.ndarray:
        """Each candidate's effective accuracy averaged over loads ~ N(rate_rps, sd_rps) on
        the grid (the nearest grid load if the normal puts no weight on it), less `risk` x its
        standard deviation over those loads."""
        w = np.exp(-0.5 * ((self.rates_rps - rate_rps) / max(sd_rps, 1e-9)) ** 2)
        if w.sum() < 1e-12:
            w[self._nearest(rate_rps)] = 1.0
        w = w / w.sum()
        mean = self.score @ w
        if risk <= 0.0:
            return np.asarray(mean)
        sd = np.sqrt(np.maximum((self.score - mean[:, None]) ** 2 @ w, 0.0))
        return np.asarray(mean - risk * sd)

    def planned_on_time(self, c: int, rate_rps: float) -> np.ndarray:
        """Candidate c's planned fraction on time were the load each of `LOAD_FACTORS` x
        `rate_rps`."""
        return np.asarray([self.on_time[c, self._nearest(f * rate_rps)] for f in LOAD_FACTORS])

    def toward(self, other: GridScores, w: float) -> GridScores:
        """These scores moved a fraction `w` of the way to `other`'s (the same candidates and
        loads): a speed between two planned ones. A candidate may be chosen as on the nearer."""
        return GridScores(self.keys, self.rates_rps, (1 - w) * self.score + w * other.score,
                          other.ok if w > 0.5 else self.ok,
                          (1 - w) * self.on_time + w * other.on_time,
                          (1 - w) * self.sojourn_s + w * other.sojourn_s)

    def steady_backlog(self, c: int, rate_rps: float, load_rps: float) -> float:
        """The requests candidate c holds (queued and in service) at `rate_rps` in steady
        state, on the plan at `load_rps` (Little's law: the rate x its time in the system)."""
        return rate_rps * float(self.sojourn_s[c, self._nearest(load_rps)])

    def allowed(self, rate_rps: float) -> np.ndarray:
        """Which candidates may be chosen at the grid load nearest `rate_rps`."""
        return np.asarray(self.ok[:, self._nearest(rate_rps)])

    def _nearest(self, rate_rps: float) -> int:
        return int(np.argmin(np.abs(self.rates_rps - rate_rps)))


@dataclass(frozen=True)
class ExpectedTablePolicy:
    """gearshift's table controller. Every period: the arrival rate over the longest recent
    window in which it has not changed (`window_rate`), the window no older than the load's
    first request after a quiet spell (a few requests late in a period after idle ones are
    too few for the window to call a change, and counted over the quiet spell a load of 40
    requests/s read as 3: live, a Twitter-trace path at 700 ms opened on ResNet-152 and
    missed 18 deadlines, all in its first two seconds), each candidate of the planner's grid
    scored by its effective accuracy averaged over what the load may be (normal, sd the larger
    of the window's Poisson noise and a relative uncertainty x the rate, as the planner's robust
    scores; that uncertainty is `rel_uncertainty` until `min_drift_periods` of the load's drift
    are measured, then the drift if smaller: `_drift`) at the load the host acts as if it had:
    the rate (plus what a backlog beyond the steady queue of the choice in force adds to it
    over a deadline: `_drain_rps`) times the smallest of `LOAD_FACTORS` at which the
    candidates in force have missed no more deadlines than their plans expected (within
    `miss_z` Poisson sd, over about 1 / (1 - `memory`) periods, at loads their plans expect
    them to hold: `_tally`), or if more, the core time its requests took (service and the
    front end's share) over its profiled mean (`_speed`, given the profile): a host slower
    than its profile, as a busy machine or a calibration that saw no tails makes it, moves
    every candidate's score alike, towards those with room to spare, rather than the one in
    force's alone. A slower host also leaves each request less of its deadline: the scores
    are read on the grid planned for the speed measured (`scores_at`, the table's
    `speed_grids`), so that a candidate whose profiled service fits the deadline with little
    to spare is not chosen where the host serves it 1.2 x slower (simulated on a host 1.2 x
    slower than its profile, at 75 ms: ResNet-50 1x2 at light load, a drop or two a period
    against static ResNet-18's none). A drop read from
    one period is a lighter load only as far as the load's drift allows: its sd is at least
    the rate before it times the drift measured so far (weighed by how many periods measured
    it, none at first, half at `min_drift_periods`). A bursty load's lull of a period is one
    more stray, and a candidate steep where the load may come back to is not taken for it
    (simulated, a Twitter-trace path at 75 ms: a period of 6 requests/s after 4 s at 19.5
    sent the table to ResNet-50 1x2 as the load came back at 18-36 requests/s, 10 late
    against static ResNet-18's none; -0.0052 below it, now +0.0004), while one flat there
    (a long deadline, fallbacks that hold the load) still is. Each score is the
    mean over those loads less `risk` x its standard deviation over them: a candidate on the steep
    side of its curve (ResNet-50 at its capacity, a standing queue absorbed by fallbacks) loses to a
    flat one of nearly the same mean, as a burst the Poisson plan does not see would have it (live,
    a Twitter-trace path at 500 ms: 36 drops in two one-second spikes against static ResNet-18's
    few). The best is taken unless the choice in force is within `keep_margin` of it
    (`realloc_margin` more when the best needs another R x T: a handover in which the new replicas
    wait for the old ones' cores; 0.01 kept ResNet-18 on 1x2 through ten seconds of a step beyond
    its capacity at 100 ms, where 2x1 was 0.010-0.013 better and static ResNet-18 2x1 ended 0.010
    above `table`). Candidates within `tie_tol` of the best are ties, broken as the planner does
    (fewer cores, more replicas). With no arrival in the whole window the choice in force stays:
    there is nothing to serve and nothing to go on, and an idle server that went to its heaviest
    variant met the next burst with it (live, a run opening at 1.1 x capacity: 22 requests dropped
    in its first second behind one 214 ms inference, against 1 for static ResNet-18).

    Against `TablePolicy` (the paper's: smoothed one-period counts, ranges, hysteresis): on a
    steady light load a 0.5 s count of 1-2 arrivals no longer sends the server to a heavy
    variant at another R x T for a period, nor a count of 10 to a light one, and a step is
    still followed within a period. `fallbacks` go with each decision as with `TablePolicy`.
    If nothing scores above 0 (far beyond every capacity) the table's range for the rate is
    taken."""

    table: PolicyTable
    scores: GridScores
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    jump_z: float = 3.0
    rel_uncertainty: float = PlanSettings.rel_uncertainty
    keep_margin: float = 0.003
    realloc_margin: float = 0.005
    tie_tol: float = PlanSettings.tie_tol
    memory: float = 0.98  # per period: ~50 periods (25 s at 0.5 s) of live evidence
    miss_z: float = 2.0
    risk: float = 1.0
    min_drift_periods: float = 16.0
    overload_on_time: float = 0.9
    stall_z: float = 1.0
    drain_deadlines: float = 1.0  # a backlog beyond the steady queue is load served over this
    # many deadlines (at least a period): `_drain_rps`; 0 reads no backlog as load
    profiled_core_ms: Mapping[tuple[str, int], tuple[float, float]] = field(
        default_factory=dict)  # (variant, threads) -> a request's profiled core time: mean
    # (`Profile.core_ms`) and variance (ms, ms²)
    frontend_ms: float = 0.0  # the front end's core time per request (`Profile.frontend_cpu_ms`)
    min_service_count: float = 8.0
    speed_z: float = 2.0
    name: str = "table"
    speed_scores: tuple[tuple[float, GridScores], ...] = ()  # (speed, its grid), ascending

    @classmethod
    def from_table(cls, table: PolicyTable, fallbacks: dict[str, tuple[str, ...]],
                   profile: Profile | None = None) -> ExpectedTablePolicy:
        """Needs the table's grid (every table `gearshift plan` writes has one); candidates
        are ruled out where the planner ruled them out (`PolicyTable.max_fallback_share`).
        With the `profile` the table was planned on, the host's speed is read from its
        service times as well as from its misses."""
        if not table.grid:
            raise ValueError("the table has no planner grid to score candidates on")
        profiled = ({(e.variant, e.threads): (profile.core_ms(e),
                                              e.threads ** 2 * float(np.var(e.service_ms)))
                     for e in profile.entries} if profile is not None else {})
        scores = GridScores.from_grid(table.grid, table.max_fallback_share)
        slower = tuple((g.speed, GridScores.from_grid(g.grid, table.max_fallback_share))
                       for g in sorted(table.speed_grids, key=lambda g: g.speed))
        if any(g.keys != scores.keys or not np.array_equal(g.rates_rps, scores.rates_rps)
               for _, g in slower):
            raise ValueError("the table's speed grids do not hold the candidates and loads of "
                             "its grid; plan the table again")
        return cls(table, scores, fallbacks, speed_scores=slower, profiled_core_ms=profiled,
                   frontend_ms=profile.frontend_cpu_ms if profile is not None else 0.0)

    def initial_state(self) -> WindowState:
        return WindowState()

    def scores_at(self, speed: float) -> GridScores:
        """The grid's scores for a host `speed` x slower than profiled: linear between the
        planned speeds around it (the profile's grid at 1 and below, the slowest planned
        beyond them)."""
        if speed <= 1.0:
            return self.scores
        below = (1.0, self.scores)
        for above in self.speed_scores:
            if speed <= above[0]:
                return below[1].toward(above[1], (speed - below[0]) / (above[0] - below[0]))
            below = above
        return below[1]

    def decide(self, obs: Observation, state: WindowState) -> tuple[Decision, WindowState]:
        counts = (*state.counts, obs.arrivals)[-WINDOWS[-1]:]
        # a quiet spell before a load is not part of its window
        rate, window_s = window_rate(since_first_request(counts) or counts, obs.period_s,
                                     self.jump_z)
        older = math.nan
        if window_s == obs.period_s and len(counts) > 1:  # a change: where in the period?
            older, _ = window_rate(counts[:-1], obs.period_s, self.jump_z)
            onset = onset_rate(obs.arrival_parts, obs.period_s, older)
            if onset is not None and onset[0] > rate > older:
                rate, window_s = onset
        noise = window_noise(rate, window_s)
        if older > rate:  # a drop: the load may come back as far as it has strayed before
            over = state.drift * state.drift_periods / (state.drift_periods
                                                        + self.min_drift_periods)
            noise = max(noise, math.sqrt(over) * older)
        drift, periods, weight = (self._drift(obs, state) if window_s > obs.period_s
                                  else (state.drift, state.drift_periods, state.drift_weight))
        sd = max(noise, self._relative_sd(drift, periods) * rate)
        # averaged, then ruled out, as the planner scores; the choice in force is ruled out
        # only once the load is beyond its limit by one sd (no flapping at the limit)
        key = obs.current.key
        since_s = state.since_s if key == state.in_force else obs.t_s - obs.period_s
        resolved, missed, planned = self._tally(obs, state, key, since_s)
        k = self._load_level(resolved, missed, planned)
        service = self._speed(obs, state)
        factor = host_slowdown(LOAD_FACTORS[k], service[-1])
        drain = self._drain_rps(obs, key, rate, factor)
        load = factor * (rate + drain)
        grid = self.scores_at(service[-1])
        allowed = grid.allowed(load)
        if state.choice >= 0:
            allowed[state.choice] = grid.allowed(load - sd)[state.choice]
        expected = grid.expected(load, factor * sd, self.risk) * allowed
        pick = self._pick(expected, state.choice)
        if not any(counts) and key in self.scores.keys:
            pick = self.scores.keys.index(key)  # idle: nothing to serve, no evidence to act on
        if pick < 0:
            r = self.table.ranges[self.table.lookup(load)]
            key = (r.variant, r.replicas, r.threads)
            pick = self.scores.keys.index(key) if key in self.scores.keys else 0
        variant, replicas, threads = self.scores.keys[pick]
        backlog = (f" + {drain:.1f} to drain a backlog of {obs.backlog}" if drain >= 0.05
                   else "")
        decision = Decision(variant, Allocation(replicas, threads),
                            f"table: {rate:.1f} rps over {window_s:g} s{backlog} -> expected "
                            f"{expected[pick]:.3f}", self.fallbacks.get(variant, ()))
        return decision, WindowState(counts, rate, window_s, pick, float(expected[pick]),
                                     resolved, missed, tuple(planned.tolist()), LOAD_FACTORS[k],
                                     key, since_s, drift, periods, weight, *service)

    def scores_over(self, state: WindowState, rate_rps: float, window_s: float
                    ) -> dict[tuple[str, int, int], float]:
        """Each candidate's score, (variant, R, T) -> expected effective accuracy less the risk
        term, were the rate `rate_rps` read over `window_s`: as `decide` scores them, at the
        load factor, speed and drift read in `state` (0 where ruled out at that load)."""
        noise = window_noise(rate_rps, window_s)
        sd = max(noise, self._relative_sd(state.drift, state.drift_periods) * rate_rps)
        factor = state.slowdown
        grid = self.scores_at(state.speed)
        load = factor * rate_rps
        scores = grid.expected(load, factor * sd, self.risk) * grid.allowed(load)
        return dict(zip(self.scores.keys, scores.tolist()))

    def _drain_rps(self, obs: Observation, key: tuple[str, int, int], rate_rps: float,
                   factor: float) -> float:
        """The load (requests/s) the backlog adds: what of it is beyond the steady queue of
        the candidate in force (`excess_backlog`), to be served within `drain_deadlines`
        deadlines (at least a period) on top of the rate. The grid's scores are for a queue
        in its steady state; a choice that sustains the rate with little to spare never
        drains one a burst left, and each request waits behind it until the next burst finds
        it there (simulated on a host 1.2 x slower than profiled, a Twitter-trace path at 900
        ms: ResNet-34 chosen at 25 requests/s behind a queue of 22 that ResNet-50 had
        absorbed, the queue at 34 when a burst to 78 requests/s came, 31 late against static
        ResNet-18's 2, -0.0092 below it; with the backlog drained ResNet-18 took over a
        period sooner, the burst met a queue of 27, and -0.0049). Only the queue beyond its
        sd counts: at 150 ms, ResNet-50 1x2's usual two or three queued near its capacity,
        read as a load to drain, sent it to ResNet-18 where it made its deadlines (0.008
        lost on that path without the sd). The steady queue is the candidate in force's: one
        load is scored for every candidate."""
        if (key not in self.scores.keys or math.isnan(rate_rps) or obs.backlog == 0
                or self.drain_deadlines <= 0):
            return 0.0
        steady = self.scores.steady_backlog(self.scores.keys.index(key), rate_rps,
                                            factor * rate_rps)
        horizon_s = max(obs.period_s, self.drain_deadlines * self.table.deadline_ms / 1000.0)
        return excess_backlog(obs.backlog, steady) / horizon_s

    def _relative_sd(self, drift: float, periods: float) -> float:
        """The rate's relative uncertainty: `rel_uncertainty`, or the load's drift if smaller
        once `min_drift_periods` of it are measured."""
        if periods >= self.min_drift_periods:
            return min(self.rel_uncertainty, math.sqrt(drift))
        return self.rel_uncertainty

    def _drift(self, obs: Observation, state: WindowState) -> tuple[float, float, float]:
        """(drift, periods, weight): how far, relative to it and beyond noise, a period's
        count strayed from the last estimate's prediction (the noise: the count's Poisson
        variance and the estimate's own, one period over its window of them), the mean of its
        squares decaying as `memory`, over how many periods (decaying alike), and the weight
        behind it; `decide` skips a period in which the window saw a change (a step is the
        window's to follow, not noise). On a steady load the 15 % a rate may be off, which the
        planner assumes, is far more than a steady load strays: at 1,180 req/s the
        Fashion-MNIST pool's fnet-l, 0.1 of its capacity below a front-end cliff, was given up
        for fnet-s though it made every deadline (simulated, 20 of 120 paths more than 0.002
        below the best static, worst -0.015; with the drift measured 16, worst -0.011; the
        ResNet bench unchanged). Each period weighs as much as it says of a relative drift
        (the inverse of its excess's variance, its count squared over the noise's ratio to it
        squared): a spell at 100 req/s, where one count 3 sd off weighs an excess of 0.25
        into the mean, had read as a drift of 11 % and given fnet-l up again at 1,040 req/s
        (simulated, Fashion-MNIST steps at 10 ms, seed 106: -0.0085 below static fnet-l, now
        -0.0054). Each period's excess is clipped at zero, so that where the counts are
        Poisson's the measure still reads a drift of about 0.5 / n, n requests a period (a
        relative 0.25 at 8): a floor under the uncertainty a drop leaves (`decide`) at low
        rates, where a period's count says least. Unclipped, the mean is unbiased, and the
        Twitter-trace lull in the class's note went back to -0.0052."""
        if math.isnan(state.rate_rps) or state.rate_rps <= 0:
            return state.drift, state.drift_periods, state.drift_weight
        mean = state.rate_rps * obs.period_s
        noise = mean * (1.0 + obs.period_s / max(state.window_s, obs.period_s))
        excess = max(0.0, (obs.arrivals - mean) ** 2 - noise) / mean ** 2
        weight = (mean / noise) ** 2 * mean ** 2
        periods = state.drift_periods * self.memory + 1.0
        total = state.drift_weight * self.memory + weight
        drift = state.drift + (excess - state.drift) * weight / total
        return drift, periods, total

    def _speed(self, obs: Observation, state: WindowState
               ) -> tuple[float, float, float, float, float]:
        """(core_ms, profiled_core_ms, profiled_core_var, count, speed): the core time the
        period's inferences' requests took (threads x service time, plus the front end's
        profiled share, `frontend_ms`) and its profiled mean and variance added to the
        decaying sums (`memory`), and the ratio of the two sums less `speed_z` of its sd were
        the host as profiled, once `min_service_count` inferences are behind it (else 1; at
        least 1): a ratio within noise of 1 is a host as profiled (simulated, on a host exactly as
        profiled, a first period's 1.017 had the Fashion-MNIST pool serve fnet-m for 10 s
        where fnet-l made its deadlines). The sd is the guard against a reading off too few
        inferences; the count only keeps it from resting on two or three (at 20, a host
        1.2 x slower than profiled was read as such only after 2 s of light load, in which
        ResNet-50 1x2 served at 75 ms and missed 6 of 23 deadlines; simulated). A host that
        serves 1.2 x slower than its profile acts as if its load were 1.2 x, at any load,
        where its misses say so only at loads that miss (live, ResNet-50 1x2 served at 64 ms
        against 46 profiled for 10 s before its misses at 120 ms showed it). The ratio is of
        core time, not of service time alone, as the load on the cores is what a slower
        service adds to: where a request's cost is
        mostly the front end's, its service time slower by half is a load a few percent
        heavier (live, the Fashion-MNIST pool's service at 0.16 ms against 0.10 calibrated,
        the front end's 1.07 ms per request besides, read as 1.5-1.8 x: fnet-xs served at
        1,000 requests/s where static fnet-s made 99.6 % of its deadlines). An inference of a
        (variant, threads) the profile has not measured is not counted."""
        measured = state.core_ms * self.memory
        profiled = state.profiled_core_ms * self.memory
        var = state.profiled_core_var * self.memory
        count = state.service_count * self.memory
        for x in obs.service:
            known = self.profiled_core_ms.get((x.variant, x.threads))
            if known is not None and x.count > 0:
                measured += x.threads * x.total_ms + self.frontend_ms * x.count
                profiled += known[0] * x.count
                var += known[1] * x.count
                count += x.count
        speed = 1.0
        if count >= self.min_service_count and profiled > 0:
            speed = max(1.0, (measured - self.speed_z * math.sqrt(var)) / profiled)
        return measured, profiled, var, count, speed

    def _tally(self, obs: Observation, state: WindowState, key: tuple[str, int, int],
               since_s: float) -> tuple[float, float, np.ndarray]:
        """(resolved, missed, planned) with the last period counted once `key`, the candidate
        in force, has been in force for a deadline and a period: until then the requests
        resolved arrived under the choice before it (a heavy variant's backlog met by a light
        one, say), and their misses say nothing of it. The planned misses at the higher of the
        last two rate estimates (late answers of a burst arrive a period after it), on the grid
        of the speed read so far (`scores_at`). Nor is a period counted at a load where the
        candidate's plan expects under `overload_on_time` of it on time: an overload's misses depend
        on the queue it met the load with, which a steady plan does not know, and say nothing of the
        host's speed (simulated, on a flash path at 900 ms, ResNet-18 met a crowd at 1.6 x its
        capacity with ResNet-101's queue standing; the misses beyond its plan read the host as 2 x
        slower than profiled for the next 23 s, on a host exactly as profiled). And a period counts
        at most `stall_z` Poisson sd more misses than its plan expects at the slowdown read so far:
        a host that stalls for a moment misses a period's worth at once, and one period is not a
        slower host (live, Fashion-MNIST at 620 req/s and 10 ms: 82 misses in one period read the
        host as 1.75 x slower, and fnet-s served for 15 s where static fnet-l made 99.5 % of its
        deadlines); a slower host misses in period after period, and the slowdown read climbs with
        them, a level at a time."""
        planned = (np.asarray(state.planned, dtype=float) * self.memory
                   if len(state.planned) == len(LOAD_FACTORS) else np.zeros(len(LOAD_FACTORS)))
        resolved, missed = state.resolved * self.memory, state.missed * self.memory
        settled = obs.t_s - since_s >= self.table.deadline_ms / 1000.0 + obs.period_s
        if key in self.scores.keys and settled and not math.isnan(state.rate_rps):
            count = obs.completed + obs.missed  # late answers counted twice: errs towards trust
            rate = max(state.rate_rps, obs.rate_rps)
            on_time = self.scores_at(state.speed).planned_on_time(self.scores.keys.index(key),
                                                                  rate)
            if on_time[0] < self.overload_on_time:
                return resolved, missed, planned
            expected = count * (1.0 - on_time)
            now = expected[LOAD_FACTORS.index(state.load_factor)]
            resolved += count
            missed += min(obs.missed, now + self.stall_z * math.sqrt(now + 1.0))
            planned += expected
        return resolved, missed, planned

    def _load_level(self, resolved: float, missed: float, planned: np.ndarray) -> int:
        """Index of the smallest of `LOAD_FACTORS` at which the misses of the candidates in
        force are within `miss_z` Poisson sd of what their plans expected (the largest if none
        is)."""
        if resolved < 1.0:
            return 0
        fits = missed <= planned + self.miss_z * np.sqrt(planned + 1.0)
        return int(np.argmax(fits)) if fits.any() else len(LOAD_FACTORS) - 1

    def _pick(self, expected: np.ndarray, current: int) -> int:
        """The candidate to serve, or -1 if none scores above 0."""
        best = float(np.max(expected))
        if best <= 0.0:
            return -1
        if current >= 0:
            margin = self.keep_margin
            top = int(np.argmax(expected))
            if self.scores.keys[top][1:] != self.scores.keys[current][1:]:
                margin += self.realloc_margin
            if expected[current] >= best - margin:
                return current
        tied = [c for c in range(len(expected)) if expected[c] >= best - self.tie_tol]
        return min(tied, key=lambda c: tie_order(*self.scores.keys[c][1:], float(expected[c])))
