"""Policies: static, the paper's table lookup (smoothed, with hysteresis), the backlog-aware
wrapper that `table` and `queue-aware` share (around `control.expected.ExpectedTablePolicy`),
the wrapper that gives their decisions upgrades, and a schedule replay (for hindsight oracles).

Each is pure: `decide(observation, state) -> (decision, state)` with a frozen state; the same
objects run in the simulator and in the live server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np

from gearshift.control.expected import ExpectedTablePolicy, WindowState, since_first_request
from gearshift.planning.table import PolicyTable
from gearshift.policy import Observation, Policy
from gearshift.profiling.profile import Profile
from gearshift.types import Allocation, Decision

S = TypeVar("S")


@dataclass(frozen=True)
class Upgrading(Generic[S]):
    """`policy`, each of its decisions carrying the upgrades of its variant (`upgrades`:
    variant -> more accurate variants, most accurate first; `Decision.upgrades`), which the
    dispatch rule may serve a request with that finds a replica free. The state is the
    policy's own."""

    policy: Policy[S]
    upgrades: Mapping[str, tuple[str, ...]]

    @property
    def name(self) -> str:
        return self.policy.name

    def initial_state(self) -> S:
        return self.policy.initial_state()

    def decide(self, obs: Observation, state: S) -> tuple[Decision, S]:
        decision, state = self.policy.decide(obs, state)
        return self.with_upgrades(decision), state

    def with_upgrades(self, decision: Decision) -> Decision:
        return replace(decision, upgrades=self.upgrades.get(decision.variant, ()))


@dataclass(frozen=True)
class StaticPolicy:
    """Always the same decision (static model versioning, the paper's baseline)."""

    decision: Decision
    name: str = "static"

    def initial_state(self) -> None:
        return None

    def decide(self, obs: Observation, state: None) -> tuple[Decision, None]:
        return self.decision, None


@dataclass(frozen=True)
class RateState:
    """`smoothed_rps`: the smoothed arrival rate (requests/s), NaN before the first period.
    `range_index`: the table range in force, -1 before the first period."""

    smoothed_rps: float = math.nan
    range_index: int = -1

    @property
    def rate_rps(self) -> float:
        return self.smoothed_rps

    @property
    def slowdown(self) -> float:
        """How much slower than profiled the host acts: the paper's controller takes the host
        as profiled (`WindowState.slowdown` measures it)."""
        return 1.0


def is_jump(prev_rps: float, rate_rps: float, period_s: float, jump_z: float) -> bool:
    """Whether the last period's count is more than `jump_z` Poisson standard deviations from
    what the estimate `prev_rps` predicts: a change of load, not noise."""
    expected = prev_rps * period_s
    return abs(rate_rps * period_s - expected) > jump_z * math.sqrt(max(expected, 1.0))


def smooth_rate(
    prev_rps: float, rate_rps: float, alpha_up: float, alpha_down: float,
    period_s: float = 1.0, jump_z: float = math.inf,
) -> float:
    """Smoothed arrival rate (requests/s): an EWMA that follows rises with `alpha_up` and falls
    with `alpha_down`, reset to the observed `rate_rps` on a jump (`is_jump` with `jump_z`)."""
    if math.isnan(prev_rps) or is_jump(prev_rps, rate_rps, period_s, jump_z):
        return rate_rps
    alpha = alpha_up if rate_rps > prev_rps else alpha_down
    return prev_rps + alpha * (rate_rps - prev_rps)


def margin_rps(boundary_rps: float, band: float, noise_z: float, period_s: float) -> float:
    """How far (requests/s) beyond a range boundary the smoothed rate must go to leave the range:
    the larger of `band` x boundary and `noise_z` standard deviations of a Poisson count at the
    boundary rate over one period (sqrt(rate / period)), so that low rates, whose one-period
    counts are relatively noisy, do not flap either."""
    if boundary_rps <= 0 or math.isinf(boundary_rps):
        return 0.0
    return max(band * boundary_rps, noise_z * math.sqrt(boundary_rps / period_s))


def range_with_hysteresis(
    table: PolicyTable, rate_rps: float, current: int, band: float, noise_z: float = 0.0,
    period_s: float = 1.0,
) -> int:
    """The table range for `rate_rps`, leaving range `current` only once the rate is beyond one
    of its bounds by `margin_rps` (so a steady load at a boundary does not flap)."""
    if current < 0:
        return table.lookup(rate_rps)
    r = table.ranges[current]
    above = rate_rps >= r.max_rps + margin_rps(r.max_rps, band, noise_z, period_s)
    below = rate_rps < r.min_rps - margin_rps(r.min_rps, band, noise_z, period_s)
    return table.lookup(rate_rps) if above or below else current


@dataclass(frozen=True)
class TablePolicy:
    """The paper's controller: smoothed arrival rate -> policy-table range -> decision.

    Smoothing (`smooth_rate`): rises followed with `alpha_up`, falls with `alpha_down`, and a
    count more than `jump_z` Poisson standard deviations off the estimate taken as a step and
    adopted at once. Hysteresis (`range_with_hysteresis`): a range is left only beyond
    `margin_rps` (`band`, `noise_z`). A clear step in load (either way) switches within one
    or two periods. The defaults follow the load closely, falls as fast as rises: a switch is
    a routing change (and an R x T change, with every R x T pre-loaded, a fraction of a
    millisecond), while an estimate slow to fall kept the light variant for tens of seconds
    after a spike (in simulation, 0.3 for falls and a 1-sd margin cost 0.005-0.03 of effective
    accuracy over 16 Markov load paths). The price: a steady Poisson load sitting on a boundary
    switches in ~10-25 % of periods, between two choices equally good there
    (tests/test_policies.py measures both).

    `fallbacks` (variant -> lighter variants, `planning.ladders.fallback_ladders`) go with each
    decision: a request the chosen variant would answer too late is answered, at dispatch, by
    the most accurate fallback that still makes its deadline instead of being dropped. This
    acts within the period, on the spike the rate estimate has not seen yet. Empty: the paper's
    controller.
    """

    table: PolicyTable
    alpha_up: float = 0.8
    alpha_down: float = 0.8
    band: float = 0.1
    noise_z: float = 0.5
    jump_z: float = 4.0
    name: str = "table"
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def initial_state(self) -> RateState:
        return RateState()

    def decide(self, obs: Observation, state: RateState) -> tuple[Decision, RateState]:
        rps = smooth_rate(state.smoothed_rps, obs.rate_rps, self.alpha_up, self.alpha_down,
                          obs.period_s, self.jump_z)
        idx = range_with_hysteresis(self.table, rps, state.range_index, self.band, self.noise_z,
                                    obs.period_s)
        r = self.table.ranges[idx]
        decision = Decision(r.variant, Allocation(r.replicas, r.threads),
                            f"table: {rps:.1f} rps -> range {idx}",
                            self.fallbacks.get(r.variant, ()))
        return decision, RateState(rps, idx)


@dataclass(frozen=True)
class Candidate:
    """A (variant, allocation) with what the queue-aware policy needs to know of it.
    Times in seconds, capacity in requests/s. `path_bound`: a model far faster than the HTTP
    path (`AllocationProfile.path_bound`), so what makes its requests late is the load on the
    front end, which the pool's backlog does not show."""

    decision: Decision
    accuracy: float
    mean_service_s: float
    p95_service_s: float
    capacity_rps: float
    path_bound: bool = False

    def predicted_latency_s(self, backlog: float, overhead_s: float, slow: float = 1.0
                            ) -> float:
        """Latency of a request arriving now behind `backlog` requests (queued + in service):
        it starts once backlog - R + 1 of them finish, at R per mean service time, on a host
        `slow` x slower than profiled."""
        r = self.decision.allocation.replicas
        wait_s = max(0, backlog - r + 1) * self.mean_service_s / r
        return slow * (wait_s + self.p95_service_s) + overhead_s


def _grown(c: Candidate, backlog: float, rate_rps: float, horizon_s: float, slow: float
           ) -> float:
    """The backlog after `horizon_s` on `c` at `rate_rps`: grown by the rate's excess over its
    capacity on a host `slow` x slower than profiled (never shrunk: a fluid drain is not
    counted on)."""
    return backlog + max(0.0, rate_rps - c.capacity_rps / slow) * horizon_s


def candidates_from(profile: Profile) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(
            Decision(e.variant, e.allocation),
            profile.accuracy[e.variant],
            float(np.mean(e.service_ms)) / 1000.0,
            e.percentile_ms(95) / 1000.0,
            e.throughput_rps,
            e.path_bound,
        )
        for e in profile.entries
    )


@dataclass(frozen=True)
class QueueState:
    """`QueueAwarePolicy`'s state: its rate policy's (`rate`) and, while a rescue is in force,
    the (variant, R, T) the table's own decision was (`table_choice`, else None)."""

    rate: Any
    table_choice: tuple[str, int, int] | None = None


class QueueAwarePolicy:
    """A rate-driven table policy, corrected by the backlog: `table` (`rescues=False`) and
    `queue-aware` are both this, around `ExpectedTablePolicy`.

    Every period: take the rate policy's decision; if it would leave a more accurate variant in
    force, keep that one while the backlog allows (`absorb`), and if the rate is beyond the
    capacity of a more accurate one whose queue would hold it for as long again, serve that
    one (`ride_out`). With `rescues`, also predict the
    latency of a request arriving now from the backlog (queue + in flight) were it served by
    the decision's lightest fallback, which the dispatch rule gives a late request: the
    backlog drained at its pace, its p95 service time, both scaled by how much slower than
    profiled the host acts (the rate policy's `slowdown`), and the mean overhead. Only if even
    that exceeds the deadline, and only if the queue is what makes it late (were it late with
    nothing queued, the table, planned with the path's cost, has chosen knowing it: a
    Fashion-MNIST profile whose busy overhead was 9.4 ms of a 10 ms deadline had `queue-aware`
    rescue period after period to a variant the path made late, simulated 0.31 below `table` on
    a flash path), is a rescue needed: choose the most accurate candidate of another variant
    that fits it and can sustain the rate (ties: higher capacity; never a path-bound one, as
    `absorb`); if none does, keep the decision (its fallbacks and the drop rule clear what
    cannot be saved: a lowest-latency pick traded capacity away). A backlog the fallbacks clear
    in time is left to them: the rescue predicted with the table's own variant behind it (rather
    than its fallback) switched a whole period to ResNet-18 for a backlog of five that the
    dispatch rule cleared in 60 ms, and lost to `table` by 0.003-0.004 on 3 of 560 simulated
    paths. Once the backlog drains the decision fits again and is used. A rescue lasts a period: the
    next one is decided as `table` would, from the table's own decision (not the rescue) as
    the one in force, so that the two differ only where a rescue fires (on a steps path at
    225 ms, a rescue to ResNet-18 that `absorb` then could not undo kept it for three periods
    in which `table`'s ResNet-50 made every deadline: 0.004 of effective accuracy).
    """

    def __init__(self, table: PolicyTable, profile: Profile,
                 smoothing: TablePolicy | ExpectedTablePolicy | None = None,
                 rescues: bool = True, name: str = "queue-aware") -> None:
        """The backlog is judged against the deadline `table` was planned for. `smoothing`:
        the table policy (and its smoothing and hysteresis settings) to start from; by default
        `TablePolicy(table)`. `rescues`: False keeps only `absorb`."""
        self.table_policy = smoothing or TablePolicy(table)
        self.rescues = rescues
        self.name = name
        self.candidates = candidates_from(profile)
        self.deadline_s = table.deadline_ms / 1000.0
        self.headroom = table.headroom
        self.overhead_s = profile.dispatch_overhead_ms() / 1000.0  # a request behind a backlog

    def initial_state(self) -> QueueState:
        return QueueState(self.table_policy.initial_state())

    def decide(self, obs: Observation, state: QueueState) -> tuple[Decision, QueueState]:
        wanted, rate_state = self.table_policy.decide(obs, state.rate)
        in_force = obs.current
        if state.table_choice is not None:  # a rescue: `table` would have its own choice
            variant, replicas, threads = state.table_choice
            in_force = Decision(variant, Allocation(replicas, threads))
        held = (self.absorb(obs, rate_state, wanted, in_force)
                or self.ride_out(obs, rate_state, wanted, in_force))
        if held is not None:
            return held, QueueState(rate_state)
        chosen = self._candidate(wanted.variant, wanted.allocation)
        lightest = self._find(wanted.fallbacks[-1], wanted.allocation) if wanted.fallbacks \
            else None
        slow = rate_state.slowdown
        last_rung = lightest or chosen
        latency_s = last_rung.predicted_latency_s(obs.backlog, self.overhead_s, slow)
        if (latency_s <= self.deadline_s or not self.rescues
                or last_rung.predicted_latency_s(0, self.overhead_s, slow) > self.deadline_s):
            return wanted, QueueState(rate_state)  # fits, or late with no queue: not a backlog
        serving = self._find(obs.current.variant, obs.current.allocation)
        pick = self.rescue(obs.backlog, rate_state.rate_rps, wanted.variant,
                           obs.current.allocation, slow,
                           slow * serving.mean_service_s if serving is not None else 0.0)
        if pick is None:  # nothing would do better: fallbacks and the drop rule take the rest
            return wanted, QueueState(rate_state)
        reason = (f"queue: backlog {obs.backlog}, even {last_rung.decision.variant} predicts "
                  f"{latency_s * 1000:.0f} ms > {self.deadline_s * 1000:.0f} ms")
        fallbacks = self.table_policy.fallbacks.get(pick.decision.variant, ())
        table_choice = wanted.key
        return (replace(pick.decision, reason=reason, fallbacks=fallbacks),
                QueueState(rate_state, table_choice))

    def absorb(self, obs: Observation, state: Any, wanted: Decision,
               current: Decision) -> Decision | None:
        """The decision in force, kept through a burst, or None. When the table would move to
        a less accurate variant, but the one in force would still answer a request arriving at
        the end of the next period within the planned fraction of the deadline, the backlog
        grown meanwhile by what the load of the whole rate window (up to 8 s) exceeds its
        capacity by, the burst is absorbed by the queue and, at dispatch, by the fallbacks: at
        900 ms, ResNet-50 clears a one-second burst to 30 requests/s that the table would meet
        with ResNet-18. A burst that outlasts the deadline fills the queue until the check
        fails, and the table's choice is taken. The window's load may exceed the capacity a
        little for a while: the queue it grows is what the deadline is for (on a trace path at
        900 ms, 25 requests/s over 4 s against ResNet-50's 24.5 sent the table to ResNet-34
        and ResNet-18 for eight periods in which static ResNet-50 made every deadline: 0.011
        below it; the rate estimate rather than the window's, there 26-54 requests/s, ends
        most absorptions and lost 0.017).
        Nor when the table's choice could not take over the queue, were the load the rate
        estimate says to last: grown by one more period on the one in force, then by the
        estimate's excess over the taker's capacity, a request behind it would miss the
        planned fraction of the deadline on the taker too. A step onto the light variant's
        capacity is then met at once: on a steps path at 900 ms, ResNet-50 held one period
        into a step to 60 requests/s (ResNet-18 2x1 sustains 50) handed ResNet-18 a queue it
        never drained, and `table` ended 0.004 below static ResNet-18.
        Nor, where the window's load is within the capacity of the one in force, unless the
        table, reading the load as the window does, scores it within its keep margin of its
        own choice (`_table_keeps`): there the fluid projection sees no queue at all, and the
        table's scores see the queue's tails and the host's speed (simulated on a host 1.2 x
        slower than profiled, at 75 ms: ResNet-50 1x2 held at 7-10 requests/s over the
        window, 2 of 6 late in a period, where the table, with the host's speed read, had gone
        to ResNet-18).
        The window begins at its first period with a request (`since_first_request`): a
        quiet spell before a load is not part of it (live, a server idle for two periods met
        a step to 1.1 x capacity on ResNet-50 and read 11-26 requests/s over the window where
        55-60 arrived; held three periods, it handed ResNet-18 a queue of 20-38 it never
        drained, and `table` ended 0.019 below static ResNet-18 in that round; with this the
        holds were a period shorter, as a load's first periods are partial and still read
        low: the queue handed over was 20-25, and the path still lost, BENCHMARKS.md).
        The projections are at the host's speed as the table reads it (`slowdown`): at the
        profile's, a host 1.2 x slower had `ride_out` take ResNet-50 1x2 into a step at 75 ms
        (58 ms predicted, 4 of 16 late; simulated). Never for a path-bound candidate: its
        requests are late at a high rate with no
        backlog at all (the fashion pool's fnet-l at 1,300 req/s: 10 % late, backlog 0-4),
        and the table, planned from the path's cost by load, already knows it. `current`: the
        decision in force (after a rescue, the table's own)."""
        if not isinstance(state, WindowState):
            return None
        counts = since_first_request(state.counts)
        if not counts:
            return None
        held = self._find(current.variant, current.allocation)
        if held is None or held.path_bound or held.accuracy <= self._accuracy(wanted.variant):
            return None
        window_rps = sum(counts) / (len(counts) * obs.period_s)
        slow = state.slowdown
        latency_s = self._projected_latency_s(held, obs.backlog, window_rps, obs.period_s, slow)
        if latency_s > self.deadline_s * self.headroom:
            return None
        if (window_rps * slow < held.capacity_rps
                and not self._table_keeps(state, window_rps, len(counts) * obs.period_s,
                                          current, wanted)):
            return None
        taker = self._find(wanted.variant, wanted.allocation)
        if taker is not None and not math.isnan(state.rate_rps):
            grown = _grown(held, obs.backlog, state.rate_rps, obs.period_s, slow)
            takeover_s = self._projected_latency_s(taker, grown, state.rate_rps, obs.period_s,
                                                   slow)
            if takeover_s > self.deadline_s * self.headroom:
                return None
        reason = (f"queue: absorbs the burst (backlog {obs.backlog}, {latency_s * 1000:.0f} ms "
                  f"predicted, {window_rps:.1f} rps over the window)")
        return Decision(current.variant, current.allocation, reason,
                        self.table_policy.fallbacks.get(current.variant, ()))

    def _table_keeps(self, state: WindowState, rate_rps: float, window_s: float,
                     held: Decision, wanted: Decision) -> bool:
        """Whether the table, reading the load as `rate_rps` over `window_s`, scores `held`
        within its `keep_margin` of `wanted` (True for a rate policy that does not score)."""
        if not isinstance(self.table_policy, ExpectedTablePolicy):
            return True
        scores = self.table_policy.scores_over(state, rate_rps, window_s)
        return (scores.get(held.key, 0.0)
                >= scores.get(wanted.key, 0.0) - self.table_policy.keep_margin)

    def ride_out(self, obs: Observation, state: Any, wanted: Decision,
                 current: Decision) -> Decision | None:
        """A more accurate variant than the table's, on the R x T in force, that rides out a
        load beyond its capacity on the queue, or None. The table plans each candidate for a
        load that lasts, and gives one beyond its capacity nothing; but a load has lasted only
        as long as the rate window has seen it, and a deadline long against the service time
        holds the queue such a load grows for a while. So: of the candidates whose capacity
        (at the host's slowdown) the rate estimate exceeds, the most accurate that would still
        answer a request arriving once the load has lasted as long again (the backlog grown by
        the load's excess over its capacity over the window's span) within the planned fraction
        of the deadline; `absorb` then keeps it while its queue fits. At 1.2 s, on a trace path,
        26-28 requests/s over 4 s after a burst (ResNet-50 sustains 24.5) sent the table to
        ResNet-18 and -34 for eight periods in which static ResNet-50 made every deadline (0.011
        below it). A load under a candidate's capacity is the table's call: it planned that one with
        its queue's tails, which a fluid projection does not see (riding out loads within capacity
        too lost 0.014 on trace paths at 75 ms). Nor where the deadline holds no queue: beyond
        capacity one forms whatever the fluid growth says, so a request behind one in service
        (its share of a mean service more) must fit too (simulated, a Twitter-trace path at 75
        ms: 23.6 requests/s over 8 s, a request's worth beyond ResNet-50 1x2's capacity, rode
        out on it at 59 ms predicted; 4 late in the next second against static ResNet-18's
        1). Not path-bound candidates (see `absorb`), and not another R x T: a handover costs
        the queue a service time."""
        if not isinstance(state, WindowState) or not state.counts or math.isnan(state.rate_rps):
            return None
        floor = self._accuracy(wanted.variant)
        horizon_s = max(obs.period_s, state.window_s)
        slow = state.slowdown
        fits: list[tuple[Candidate, float]] = []
        for c in self.candidates:
            if (c.path_bound or c.accuracy <= floor or c.capacity_rps / slow >= state.rate_rps
                    or c.decision.allocation != current.allocation):
                continue
            latency_s = self._projected_latency_s(c, obs.backlog, state.rate_rps, horizon_s,
                                                  slow)
            # every replica busy, one request queued: the least queue an overload keeps
            holds = c.predicted_latency_s(c.decision.allocation.replicas, self.overhead_s, slow)
            if max(latency_s, holds) <= self.deadline_s * self.headroom:
                fits.append((c, latency_s))
        if not fits:
            return None
        pick, latency_s = max(fits, key=lambda f: f[0].accuracy)
        variant = pick.decision.variant
        reason = (f"queue: rides out {state.rate_rps:.1f} rps over {horizon_s:g} s on {variant} "
                  f"({latency_s * 1000:.0f} ms predicted)")
        return Decision(variant, pick.decision.allocation, reason,
                        self.table_policy.fallbacks.get(variant, ()))

    def _projected_latency_s(self, c: Candidate, backlog: float, rate_rps: float,
                             horizon_s: float, slow: float) -> float:
        """Latency on `c` of a request arriving `horizon_s` from now, the backlog grown
        meanwhile by what `rate_rps` exceeds `c`'s capacity by, on a host `slow` x slower than
        profiled (`absorb`, `ride_out`: the table's `slowdown`, as a rescue's prediction)."""
        return c.predicted_latency_s(_grown(c, backlog, rate_rps, horizon_s, slow),
                                     self.overhead_s, slow)

    def _accuracy(self, variant: str) -> float:
        return next(c.accuracy for c in self.candidates if c.decision.variant == variant)

    def rescue(self, backlog: int, rate_rps: float, table_variant: str,
               in_force: Allocation, slow: float = 1.0, handover_s: float = 0.0
               ) -> Candidate | None:
        """The most accurate candidate of another variant than the table's predicted to meet
        the deadline at this backlog and sustain the rate, or None if none is (a deadline too
        tight for any p95, or a backlog beyond saving: the table's choice stays, its fallbacks
        and the drop rule clear it); of those as accurate, one on the R x T `in_force` (a
        handover costs the backlog a service time: at 75 ms, ResNet-50 1x2 rescued by ResNet-18
        2x1 on a backlog of two lost 0.003-0.009 of effective accuracy against the table on 8 of
        16 paths), then the higher capacity. A candidate on another R x T is predicted
        `handover_s` later: its replicas start once those in force hand over their cores, a
        service of the variant in force (at 100 ms, ResNet-50 1x2 rescued on a backlog of four
        by ResNet-18 2x1, 99 ms predicted without it, lost 0.005 against the table, whose
        fallbacks served the backlog on the replica in force). Another R x T of the table's
        variant is the table's call: it costs a handover and, with fewer threads, speed per
        request (at 75 ms, moving ResNet-18 from 1x2 to 2x1 on a backlog cost 0.010)."""
        fits = [
            c for c in self.candidates
            if c.decision.variant != table_variant and not c.path_bound
            and c.predicted_latency_s(backlog, self.overhead_s, slow)
            + (handover_s if c.decision.allocation != in_force else 0.0) <= self.deadline_s
            and c.capacity_rps >= slow * rate_rps
        ]
        return max(fits, key=lambda c: (c.accuracy, c.decision.allocation == in_force,
                                        c.capacity_rps)) if fits else None

    def _find(self, variant: str, allocation: Allocation) -> Candidate | None:
        return next((c for c in self.candidates if c.decision.variant == variant
                     and c.decision.allocation == allocation), None)

    def _candidate(self, variant: str, allocation: Allocation) -> Candidate:
        found = self._find(variant, allocation)
        if found is None:
            raise KeyError(f"the profile has no entry for the table's choice {variant} "
                           f"{allocation}")
        return found


@dataclass(frozen=True)
class SchedulePolicy:
    """Replays a schedule: `decisions[k]` serves period k, [k * period_s, (k + 1) * period_s);
    after the last period the last decision stays. For hindsight oracles (`sim.oracle`)."""

    decisions: tuple[Decision, ...]
    period_s: float = 1.0
    name: str = "schedule"

    def initial_state(self) -> None:
        return None

    def decide(self, obs: Observation, state: None) -> tuple[Decision, None]:
        k = round(obs.t_s / self.period_s)
        return self.decisions[min(k, len(self.decisions) - 1)], None
