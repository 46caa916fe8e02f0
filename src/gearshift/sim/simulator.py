"""Discrete-event simulation of the server, driven by the same `Controller` the live server runs.

`simulate` runs the control loop under a simulated clock: every `period_s` it builds an
`Observation` of the last period, calls `controller.step`, and applies the `Decision` (see
`gearshift.sim.engine` for the queueing, overhead and reallocation semantics). `simulate_fixed`
is the planner's fast path: one variant and allocation for the whole run, one kernel call.

Both are seeded and deterministic: the same arrivals, profile, controller and seed give identical
records. Each request's luck (which service and overhead sample it gets) is drawn from the seed
up front, independent of the decisions, so runs of different policies on one seed are paired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gearshift.dispatch import served_as
from gearshift.host_loop import HostLoop
from gearshift.policy import Controller, Observation, ServiceTimes, arrival_parts, service_times
from gearshift.profiling.profile import Profile
from gearshift.sim.engine import (
    Answering,
    Block,
    RunInputs,
    SimState,
    apply_decision,
    initial_state,
    make_inputs,
    serve,
)
from gearshift.sim.records import STATUS_DROPPED, STATUS_OK, RequestColumns, empty_columns
from gearshift.sim.sampling import RequestDraws, ServiceSampler
from gearshift.types import SERVED_AS, Allocation, Decision, DropRule


@dataclass(frozen=True)
class SimSettings:
    """`period_s`: control period (s). `realloc_delay_s`: time (s) for a new R x T to come up.
    `drop`: which requests are dropped at dispatch instead of served late (`DropRule`, as the
    live pool's setting of the same name).
    `duration_s`: run the control loop at least this long (s), even after the last arrival."""

    period_s: float = 1.0
    realloc_delay_s: float = 0.0
    drop: DropRule = "hopeless"
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.period_s > 0 or self.realloc_delay_s < 0 or self.duration_s < 0:
            raise ValueError(f"invalid simulator settings {self}")


@dataclass(frozen=True)
class SimResult:
    """Per-request columns, and per period the observation at its end and the decision taken
    on it (`decisions[k]` on `observations[k]`); the run ends once everything is answered, and
    the final observation gets no decision."""

    columns: RequestColumns
    observations: tuple[Observation, ...]
    decisions: tuple[Decision, ...]


def simulate(
    profile: Profile,
    controller: Controller[Any],
    arrival_s: np.ndarray,
    deadline_ms: float,
    initial: Decision,
    seed: int,
    settings: SimSettings = SimSettings(),
) -> SimResult:
    """Serve `arrival_s` (sorted, seconds) starting with `initial`, stepping `controller` every
    period until every request is answered or dropped (and at least `settings.duration_s`)."""
    sampler = ServiceSampler.from_profile(profile)
    draws = RequestDraws.draw(len(arrival_s), seed)
    inputs = make_inputs(sampler, arrival_s, deadline_ms, draws, settings.drop)
    host = SimHost(inputs, initial, settings)
    loop = HostLoop(controller, settings.period_s)
    for t1 in loop.times():  # ends: with finite service times every request is answered
        if loop.tick(host, t1) is None:
            break
    return SimResult(host.cols, tuple(host.observations), tuple(host.decisions))


class SimHost:
    """The simulated server as a `Host`: serving up to a tick is part of observing it."""

    def __init__(self, inputs: RunInputs, initial: Decision, settings: SimSettings) -> None:
        self.inputs = inputs
        self.settings = settings
        self.cols = empty_columns(inputs.arrival_s, inputs.deadline_ms, inputs.variants)
        self.end_s = max(settings.duration_s,
                         float(inputs.arrival_s[-1]) if len(inputs.arrival_s) else 0.0)
        self.state = initial_state(initial)
        self.observations: list[Observation] = []
        self.decisions: list[Decision] = []
        self._last_tick_s = 0.0

    def observe(self, t_s: float) -> Observation:
        inputs, period_s = self.inputs, self.settings.period_s
        lo, hi = np.searchsorted(inputs.arrival_s, [self._last_tick_s, t_s])
        self._last_tick_s = t_s
        before = self.state
        state, blocks = serve(inputs, before, int(hi), t_s)
        write_blocks(self.cols, blocks, inputs.variants)
        obs, answering = observe(inputs, before, state, blocks, t_s, period_s, int(lo))
        self.state = replace(state, answering=answering)
        self.observations.append(obs)
        return obs

    def finished(self, obs: Observation) -> bool:
        s = self.state
        return (obs.t_s >= self.end_s and s.head == len(self.inputs.arrival_s)
                and len(s.answering.end_s) == 0)

    def apply(self, decision: Decision, t_s: float) -> None:
        self.decisions.append(decision)
        self.state = apply_decision(self.state, decision, t_s, self.settings.realloc_delay_s)


def simulate_fixed(
    profile: Profile,
    variant: str,
    allocation: Allocation,
    arrival_s: np.ndarray,
    deadline_ms: float,
    seed: int,
    drop: DropRule = "hopeless",
) -> RequestColumns:
    """Serve `arrival_s` (sorted, s) with one variant and allocation throughout (no controller)."""
    sampler = ServiceSampler.from_profile(profile)
    draws = RequestDraws.draw(len(arrival_s), seed)
    return serve_fixed(sampler, variant, allocation, arrival_s, deadline_ms, draws, drop)


def serve_fixed(
    sampler: ServiceSampler,
    variant: str,
    allocation: Allocation,
    arrival_s: np.ndarray,
    deadline_ms: float,
    draws: RequestDraws,
    drop: DropRule = "hopeless",
    fallbacks: tuple[str, ...] = (),
    upgrades: tuple[str, ...] = (),
) -> RequestColumns:
    """`simulate_fixed` with the sampler and per-request draws given (the planner reuses them
    across candidates and loads); `draws` may be longer than `arrival_s`. `fallbacks`,
    `upgrades`: as a `Decision`'s, lighter variants for requests `variant` would answer too
    late, more accurate ones for requests that find a replica free."""
    inputs = make_inputs(sampler, arrival_s, deadline_ms, draws, drop)
    state = initial_state(Decision(variant, allocation, fallbacks=fallbacks, upgrades=upgrades))
    _, blocks = serve(inputs, state, len(inputs.arrival_s), math.inf)
    cols = empty_columns(inputs.arrival_s, deadline_ms, inputs.variants)
    write_blocks(cols, blocks, inputs.variants)
    return cols


def write_blocks(cols: RequestColumns, blocks: list[Block], variants: tuple[str, ...]) -> None:
    """Fill the columns of the requests the blocks resolved (in place)."""
    for b in blocks:
        sl = slice(b.lo, b.lo + len(b.start_s))
        served = b.served
        cols.completed_s[sl] = b.completed_s
        cols.status[sl] = np.where(served, STATUS_OK, STATUS_DROPPED)
        codes = np.array([variants.index(v) for v in b.ladder], dtype=np.int64)
        cols.variant_code[sl] = np.where(served, codes[np.maximum(b.choice, 0)], -1)
        cols.queue_ms[sl] = (b.start_s - cols.arrival_s[sl]) * 1000.0
        cols.service_ms[sl] = np.where(served, (b.end_s - b.start_s) * 1000.0, 0.0)
        roles = np.array([SERVED_AS.index(served_as(k, b.base)) for k in range(len(b.ladder))],
                         dtype=np.int8)
        cols.served_as_code[sl] = np.where(served, roles[np.maximum(b.choice, 0)], -1)


def observe(
    inputs: RunInputs, before: SimState, after: SimState, blocks: list[Block], t1: float,
    period_s: float, first_arrival: int,
) -> tuple[Observation, Answering]:
    """The last period [t1 - period_s, t1) as the host sees it at t1, and the requests whose
    answer is still to come."""
    pool = _pool(before.answering, blocks, inputs.arrival_s)
    done = pool.completed_s < t1
    dropped = sum(int(np.count_nonzero(~b.served)) for b in blocks)
    latency_ms = (pool.completed_s[done] - pool.arrival_s[done]) * 1000.0
    arrived = int(np.searchsorted(inputs.arrival_s, t1))
    obs = Observation(
        t_s=t1,
        period_s=period_s,
        arrivals=arrived - first_arrival,
        queue_length=arrived - after.head,
        in_flight=int(np.count_nonzero(pool.end_s[~done] > t1)),
        completed=int(np.count_nonzero(done)),
        missed=dropped + int(np.count_nonzero(latency_ms > inputs.deadline_ms)),
        latency_p99_ms=quantile(latency_ms, 0.99),
        current=after.decision,
        arrival_parts=arrival_parts(inputs.arrival_s[first_arrival:arrived], t1, period_s),
        service=_service_times(blocks),
    )
    left = ~done
    return obs, Answering(pool.arrival_s[left], pool.end_s[left], pool.completed_s[left])


def _service_times(blocks: list[Block]) -> tuple[ServiceTimes, ...]:
    """The blocks' inferences' service times, per (variant, threads): in the simulator a
    service time is known at dispatch, so they count in the period they started in."""
    parts: list[ServiceTimes] = []
    for b in blocks:
        served = b.served
        ms = (b.end_s[served] - b.start_s[served]) * 1000.0
        choice = b.choice[served]
        parts += [ServiceTimes(b.ladder[c], b.threads, int(np.count_nonzero(choice == c)),
                               float(ms[choice == c].sum())) for c in np.unique(choice).tolist()]
    return service_times(parts)


def quantile(x: np.ndarray, q: float) -> float:
    """The q-quantile (0..1) with linear interpolation, as np.quantile, NaN if x is empty;
    several times faster than np.quantile on the small arrays of one period."""
    if len(x) == 0:
        return math.nan
    xs = np.sort(x)
    pos = q * (len(xs) - 1)
    i = int(pos)
    j = min(i + 1, len(xs) - 1)
    return float(xs[i] + (xs[j] - xs[i]) * (pos - i))


def _pool(carried: Answering, blocks: list[Block], arrival_s: np.ndarray) -> Answering:
    """Carried-over answered-later requests plus the blocks' answered (not dropped) requests."""
    parts = [carried]
    for b in blocks:
        s = b.served
        arr = arrival_s[b.lo:b.lo + len(b.start_s)][s]
        parts.append(Answering(arr, b.end_s[s], (b.end_s + b.overhead_s)[s]))
    return Answering(
        np.concatenate([p.arrival_s for p in parts]),
        np.concatenate([p.end_s for p in parts]),
        np.concatenate([p.completed_s for p in parts]),
    )
