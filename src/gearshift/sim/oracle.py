"""A hindsight oracle: per period, the (variant, allocation) that did best for that period.

Greedy and approximate: at the start of period k, from the state the oracle's own earlier choices
left (queue, replica free times, a reallocation under way), each candidate is applied and run,
with hindsight of the actual arrivals and of each request's service and overhead draws (same
seed as the replay), until every request that arrived before the period's end is answered or
dropped (later arrivals cannot affect them: FCFS). Its score is the sum of accuracy x on-time
over those requests (the queue carried in plus the period's arrivals), as if the candidate were
kept to the end; the best is applied for one period only and the run moves on. It does not look
further ahead (a choice that helps this period but leaves a longer queue for the next is not
penalised beyond the requests it already holds), so it bounds what a per-period policy can do
only approximately.

Replay: `simulate(profile, Controller(SchedulePolicy(result.decisions, period_s)), arrivals,
deadline_ms, result.decisions[0], seed, settings)` with the same seed serves the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gearshift.profiling.profile import Profile
from gearshift.sim.engine import (
    Block,
    RunInputs,
    SimState,
    apply_decision,
    initial_state,
    make_inputs,
    serve,
)
from gearshift.sim.sampling import RequestDraws, ServiceSampler
from gearshift.types import Decision


@dataclass(frozen=True)
class OracleResult:
    """`decisions[k]` serves period k; `effective_accuracy[k]` is its score divided by the
    number of requests it covered (NaN if none)."""

    decisions: tuple[Decision, ...]
    effective_accuracy: tuple[float, ...]


def oracle_schedule(
    profile: Profile,
    arrival_s: np.ndarray,
    deadline_ms: float,
    seed: int,
    period_s: float = 1.0,
    realloc_delay_s: float = 0.0,
    candidates: list[Decision] | None = None,
) -> OracleResult:
    """Pick, period by period, the candidate with the best hindsight score (see module doc).
    `candidates` defaults to every (variant, allocation) in the profile."""
    cands = candidates or [Decision(e.variant, e.allocation, "oracle") for e in profile.entries]
    sampler = ServiceSampler.from_profile(profile)
    draws = RequestDraws.draw(len(arrival_s), seed)
    inputs = make_inputs(sampler, arrival_s, deadline_ms, draws)
    n_periods = max(1, int(np.ceil(inputs.arrival_s[-1] / period_s))) if len(arrival_s) else 1
    state: SimState | None = None
    decisions: list[Decision] = []
    scores: list[float] = []
    for k in range(n_periods):
        t0, t1 = k * period_s, (k + 1) * period_s
        hi = int(np.searchsorted(inputs.arrival_s, t1))
        starts = [_start(state, c, t0, realloc_delay_s) for c in cands]
        results = [_score(inputs, s, hi) for s in starts]
        best = int(np.argmax([r[0] for r in results]))
        decisions.append(cands[best])
        scores.append(results[best][1])
        state, _ = serve(inputs, starts[best], hi, t1)
    return OracleResult(tuple(decisions), tuple(scores))


def _start(state: SimState | None, decision: Decision, t_s: float, delay_s: float) -> SimState:
    if state is None:
        return initial_state(decision, t_s)
    return apply_decision(state, decision, t_s, delay_s)


def _score(inputs: RunInputs, state: SimState, hi: int) -> tuple[float, float]:
    """(sum of accuracy x on-time, that sum per request) over requests head .. hi-1 if the
    state's decision is kept until they are all resolved."""
    _, blocks = serve(inputs, state, hi, np.inf)
    total = sum(_block_score(inputs, b) for b in blocks)
    n = hi - state.head
    return total, (total / n if n else float("nan"))


def _block_score(inputs: RunInputs, block: Block) -> float:
    n = len(block.start_s)
    if n == 0:
        return 0.0
    arrivals = inputs.arrival_s[block.lo:block.lo + n]
    latency_ms = (block.completed_s - arrivals) * 1000.0
    on_time = block.served & (latency_ms <= inputs.deadline_ms)
    acc = np.array([inputs.sampler.accuracy[v] for v in block.ladder])
    return float(np.sum(acc[block.choice[on_time]]))

