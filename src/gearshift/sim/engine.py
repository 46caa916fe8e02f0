"""The simulated server's state and how it advances: a period at a time, with the FCFS kernel.

The server holds one FCFS queue and R replicas. Between period boundaries nothing the controller
controls changes, so a period is simulated by one kernel call (two if a reallocation completes
inside it) over the requests still queued plus the period's arrivals, stopped at the period's
end: requests not dispatched by then stay queued, and get the service time of whatever variant
and allocation are in force when they are dispatched (the live pool resolves the variant at
dispatch). The state carried across boundaries is the queue head, each replica's free time and
the requests still being answered.

Overhead: each answered request's latency is queue wait + service + overhead, where overhead is a
draw added *after* service, from the profile's `overhead_ms` samples for a request dispatched at
once and from its `busy_overhead_ms()` for one that waited for a replica (the front end then
shares the cores with busy replicas: live, 5.6-6.8 ms mean against 3.5-4.8); for a path-bound
entry (`AllocationProfile.path_bound`: a model far faster than the HTTP path), from the
profile's `overhead_by_load` at the utilization of the cores the request's rate (arrivals of
the last second, `offered_rate_rps`) gives with that entry, waited or not. It models the
front end's path (HTTP, IPC, event loop) and does not occupy a replica; the deadline check at
dispatch counts the busy mean (`Profile.dispatch_overhead_ms`: the check judges waiting
requests only), or for a path-bound entry the curve's median at the request's offered rate
(`Profile.path_overheads`; the live pool: at its arrivals of the last second).
That check follows the live pool's `DropRule`: "expired" drops a request whose deadline has
passed when a replica would start it; "hopeless" also one whose start plus the median service
time of the variant and allocation in force and that overhead would overrun it. A decision's
fallbacks (lighter variants, in order) change whom it is served by: the first of the variant in
force and its fallbacks whose service time at its `types.safe_quantiles` entry (at least p90;
higher when the next is nearly as accurate) plus that overhead fits what is left, else the first
whose median service time plus that overhead does, else it is dropped: the live pool's rule,
`gearshift.dispatch`. Its upgrades (more accurate variants) may serve a request that finds a
replica free, by the same rule, the load read at the request's arrival (`upgrade_rate_rps`).

Hold: a replica is busy for a request's service time plus its entry's hold time
(`AllocationProfile.hold_ms`: what the saturation throughput says a replica takes per request
beyond its service, among it the hand-offs to it and back), so a saturated entry answers at
its profiled throughput, not at R / mean service (ResNet-18 2x1: 51.5 requests/s against
56.8). The request's own latency already holds its hand-off in its overhead draw (live latency
less queue and service); the hold delays the requests behind it. Without it, the demo's static
ResNet-18 queued 35 ms at p99 simulated against 42 live.

Reallocation: a decision with a new R x T at time t makes the new replicas available at
t + realloc_delay_s, each once the old replicas on its cores have finished what they hold;
until then the old replicas keep serving the queue (the live pool keeps the old workers active
while the new ones load), already with the new variant, so the profile needs an entry for (new
variant, old allocation) when the delay is > 0. Requests already in service finish on their old
replica; the CPU contention of that overlap is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from gearshift.cores import assign_slots, sharing_cores
from gearshift.dispatch import FREE_WAIT_S, close_unresolved_upgrades, ladder, rung_times_s
from gearshift.sim.kernel import run_fcfs
from gearshift.sim.sampling import (
    RequestDraws,
    ServiceSampler,
    offered_rate_rps,
    upgrade_rate_rps,
)
from gearshift.types import Allocation, Decision, DropRule, safe_quantiles


@dataclass(frozen=True)
class RunInputs:
    """Everything fixed for a run. `arrival_s` sorted (s); `deadline_s` absolute (s) per request,
    or None to serve every request however late; `deadline_ms` the latency deadline;
    `hopeless`: drop at dispatch when the median service time and the mean overhead would
    overrun the deadline."""

    arrival_s: np.ndarray
    deadline_s: np.ndarray | None
    deadline_ms: float
    draws: RequestDraws
    sampler: ServiceSampler
    variants: tuple[str, ...]
    hopeless: bool = True
    rate_rps: np.ndarray = field(default_factory=lambda: np.empty(0))
    upgrade_rate_rps: np.ndarray = field(default_factory=lambda: np.empty(0))


def make_inputs(
    sampler: ServiceSampler, arrival_s: np.ndarray, deadline_ms: float, draws: RequestDraws,
    drop: DropRule = "hopeless",
) -> RunInputs:
    arrivals = np.ascontiguousarray(arrival_s, dtype=np.float64)
    if arrivals.ndim != 1 or np.any(np.diff(arrivals) < 0) or (len(arrivals) and arrivals[0] < 0):
        raise ValueError("arrival_s must be a sorted 1-d array of arrival times >= 0 s")
    if not deadline_ms > 0:
        raise ValueError(f"deadline_ms must be > 0, got {deadline_ms}")
    deadlines = arrivals + deadline_ms / 1000.0 if drop != "never" else None
    variants = tuple(dict.fromkeys(v for v, _ in sampler.service_s))
    return RunInputs(arrivals, deadlines, float(deadline_ms), draws, sampler, variants,
                     drop == "hopeless", offered_rate_rps(arrivals) if sampler.path_bound else
                     np.zeros(len(arrivals)), upgrade_rate_rps(arrivals))


@dataclass(frozen=True)
class Servers:
    """Replicas in force (`free_s`: each one's free time, s) and a reallocation under way."""

    allocation: Allocation
    free_s: np.ndarray
    next_allocation: Allocation | None = None
    next_at_s: float = math.inf


@dataclass(frozen=True)
class Answering:
    """Dispatched requests whose answer comes after the last boundary (for observations)."""

    arrival_s: np.ndarray
    end_s: np.ndarray  # service end, s
    completed_s: np.ndarray  # service end + overhead, s

    @classmethod
    def none(cls) -> Answering:
        empty = np.empty(0)
        return cls(empty, empty, empty)


@dataclass(frozen=True)
class SimState:
    """The server at a period boundary. `head`: first request not yet dispatched or dropped."""

    head: int
    variant: str
    servers: Servers
    answering: Answering
    fallbacks: tuple[str, ...] = ()
    upgrades: tuple[str, ...] = ()

    @property
    def decision(self) -> Decision:
        return Decision(self.variant, self.servers.allocation, fallbacks=self.fallbacks,
                        upgrades=self.upgrades)


def initial_state(decision: Decision, t_s: float = 0.0) -> SimState:
    free = np.full(decision.allocation.replicas, t_s)
    return SimState(0, decision.variant, Servers(decision.allocation, free), Answering.none(),
                    decision.fallbacks, decision.upgrades)


@dataclass(frozen=True)
class Block:
    """Requests lo .. lo+len-1, resolved in one kernel call with one ladder: the variant in
    force, its upgrades before it and its fallbacks after it (`dispatch.ladder`).

    `start_s`: dispatch or drop time (s). `end_s`: service end (s), NaN if dropped.
    `overhead_s`: overhead draws (s), added after service for answered requests.
    `choice`: per request, the ladder index of the variant that served it (-1: dropped).
    `threads`: of the replicas that served them. `base`: the ladder index of the variant in
    force.
    """

    lo: int
    ladder: tuple[str, ...]
    start_s: np.ndarray
    end_s: np.ndarray
    overhead_s: np.ndarray
    choice: np.ndarray
    threads: int = 0
    base: int = 0

    @property
    def served(self) -> np.ndarray:
        return np.asarray(~np.isnan(self.end_s), dtype=np.bool_)

    def served_by(self) -> list[str]:
        """The variant that served each request ('' where dropped)."""
        return [self.ladder[c] if c >= 0 else "" for c in self.choice.tolist()]

    @property
    def completed_s(self) -> np.ndarray:
        """Answer time (s): service end + overhead, or the drop time for a dropped request."""
        return np.where(self.served, self.end_s + self.overhead_s, self.start_s)


def apply_decision(state: SimState, decision: Decision, t_s: float, delay_s: float) -> SimState:
    """Switch variant at once; start a reallocation that completes at t_s + delay_s (at once
    if delay_s is 0). A new allocation replaces one still coming up; returning to the one in
    force cancels it."""
    servers = state.servers
    if decision.allocation == servers.allocation:
        servers = replace(servers, next_allocation=None, next_at_s=math.inf)
    elif delay_s <= 0:
        servers = _swap(replace(servers, next_allocation=decision.allocation, next_at_s=t_s))
    elif decision.allocation != servers.next_allocation:
        servers = replace(servers, next_allocation=decision.allocation, next_at_s=t_s + delay_s)
    return replace(state, variant=decision.variant, servers=servers,
                   fallbacks=decision.fallbacks, upgrades=decision.upgrades)


def serve(inputs: RunInputs, state: SimState, hi: int, horizon_s: float) -> tuple[
    SimState, list[Block]
]:
    """Dispatch or drop queued requests head .. hi-1 until `horizon_s` (s), completing a
    reallocation on the way if it falls before the horizon."""
    blocks: list[Block] = []
    while True:
        servers = state.servers
        until = min(horizon_s, servers.next_at_s)
        block, free = _serve_segment(inputs, state, hi, until)
        blocks.append(block)
        state = replace(state, head=state.head + len(block.start_s),
                        servers=replace(servers, free_s=free))
        if servers.next_allocation is None or servers.next_at_s > horizon_s:
            return state, blocks
        state = replace(state, servers=_swap(servers))


def _swap(servers: Servers) -> Servers:
    """The new replicas, each free once its cores are: at the switch, or when an old replica on
    any of the same cores finishes the request it holds (the live pool's old replicas finish
    theirs on those cores while the new ones take over)."""
    new, old = servers.next_allocation, servers.allocation
    assert new is not None
    cores = list(range(max(new.cores, old.cores)))
    old_slots = assign_slots(old.replicas, old.threads, cores)
    free = [max([servers.next_at_s, *servers.free_s[sharing_cores(slot, old_slots)]])
            for slot in assign_slots(new.replicas, new.threads, cores)]
    return Servers(new, np.asarray(free, dtype=np.float64))


def _serve_segment(inputs: RunInputs, state: SimState, hi: int, horizon_s: float) -> tuple[
    Block, np.ndarray
]:
    lo = state.head
    alloc = state.servers.allocation
    rungs, base = ladder(state.variant, state.fallbacks, inputs.hopeless,
                         lambda f: (f, alloc) in inputs.sampler.service_s, state.upgrades)
    if lo >= hi:  # nothing queued: do not look up (variant, allocation), it may be unprofiled
        empty = np.empty(0)
        return (Block(lo, rungs, empty, empty, empty, np.empty(0, dtype=np.int64), alloc.threads,
                      base),
                state.servers.free_s)
    u = inputs.draws.service_u[lo:hi]
    service = np.column_stack([inputs.sampler.service(v, alloc, u) for v in rungs])
    hold = inputs.sampler.hold(rungs, alloc)  # the replica is busy for service + hold
    deadlines = None if inputs.deadline_s is None else inputs.deadline_s[lo:hi]
    slack = safe = path_s = None
    overhead_ms = 0.0
    if inputs.hopeless:
        path = inputs.sampler.dispatch_path.get((state.variant, alloc))
        if path is None:
            overhead_ms = inputs.sampler.dispatch_overhead_ms
        else:  # each request's path cost at its offered rate, on top of the rung times
            path_s = path.at_each(inputs.rate_rps[lo:hi]) / 1000.0
        quantiles = safe_quantiles([inputs.sampler.accuracy[v] for v in rungs])
        samples = [inputs.sampler.samples_s(v, alloc) for v in rungs]
        times = [rung_times_s(s * 1000.0, q, overhead_ms)
                 for s, q in zip(samples, quantiles, strict=True)]
        safe, slack = (np.array(t) for t in zip(*times, strict=True))
        safe = close_unresolved_upgrades(safe, quantiles, [len(s) for s in samples], base)
    res = run_fcfs(inputs.arrival_s[lo:hi], service + hold, state.servers.free_s, deadlines,
                   horizon_s, slack, safe, overhead_ms / 1000.0, path_s, base,
                   inputs.upgrade_rate_rps[lo:hi])
    n = res.n_done
    end_s = res.end_s[:n] - hold[np.maximum(res.choice[:n], 0)]  # the service's own end
    waited = res.start_s[:n] - inputs.arrival_s[lo:lo + n] >= FREE_WAIT_S
    overhead = inputs.sampler.overhead(state.variant, alloc, inputs.draws.overhead_u[lo:lo + n],
                                       waited, inputs.rate_rps[lo:lo + n],
                                       inputs.draws.level_u[lo:lo + n])
    block = Block(lo, rungs, res.start_s[:n], end_s, overhead, res.choice[:n], alloc.threads,
                  base)
    return block, res.free_s
