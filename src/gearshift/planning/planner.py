"""The offline planner: profile + deadline + load grid -> policy table.

For every load on the grid and every (variant, allocation) in the profile it simulates Poisson
arrivals at that rate for `duration_s` with that choice fixed (`sim.serve_fixed`: measured
service and overhead samples, requests whose deadline passed before dispatch dropped, as the
live pool does) and measures p_on_time = P(latency <= D) over all requests (a dropped request is
not on time), effective accuracy = p_on_time x accuracy, and p50/p99 latency of answered
requests. Requests arriving in the first `warmup_frac` of the run are not counted (the queue
starts empty).

Common random numbers: every candidate at every load sees the same unit-rate Poisson process
(scaled by 1 / rate) and the same per-request service and overhead draws, so differences between
candidates and between neighbouring loads are not sampling noise, and curves are smooth.

Robustness: the controller acts on an estimate of the rate, which is off by at least one
period's Poisson noise (sd sqrt(rate / period)) and by the lag of its smoothing. A candidate
whose effective accuracy falls off a cliff just above the estimate (a heavy variant near its
capacity) is then a poor bet. So each candidate is scored at each load by its effective accuracy
averaged over nearby loads, weighted by a normal kernel of sd max(`rel_uncertainty` x rate,
sqrt(rate / `period_s`)); the table reports the nominal figures of the choice.

Fallbacks: with `fallbacks` (variant -> lighter variants, as the `table` policy's decisions
carry), each candidate is simulated with its fallbacks answering the requests it would answer too
late, and its effective accuracy counts each request at the accuracy of the variant that answered
it: a heavy variant whose queue sometimes runs long, backed by lighter ones, can then be the
best choice. Fallbacks are for bursts, not for sustained overload: a candidate whose fallbacks
answer more than `max_fallback_share` of its requests at a load is not chosen there
(`bursts_only`).

A slower host: a host `s` x slower than the profile serves each request `s` x longer, which
in the profile's time is a load `s` x heavier and a deadline `s` x shorter. The `table`
controller reads the first (its load factor and measured speed); for the second the grid is
planned again at each of `settings.speeds`, judged against headroom x deadline / s
(`SpeedGrid`), and the controller scores its candidates on the grid of the speed it reads.
The table's ranges are the profiled host's.

Choice per load: the highest (averaged) score; candidates within `tie_tol` of it are ties,
broken by fewer cores, then more replicas (more headroom for a rise in load), then higher
effective accuracy. If no candidate makes any deadline (all effective accuracies 0, e.g. far
above capacity) the one with the highest measured throughput is named. Contiguous loads with
the same choice merge into one `PolicyRange`; a boundary lies halfway between grid loads; the
first range starts at 0 and the last ends at infinity.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TypeVar

import numpy as np

from gearshift.planning.ladders import fallback_ladders
from gearshift.planning.settings import DEFAULT_PLAN, PlanSettings
from gearshift.planning.table import GridPoint, PolicyRange, PolicyTable, SpeedGrid
from gearshift.profiling.profile import Profile
from gearshift.progress import StepCallback as Progress
from gearshift.sim.records import RequestColumns
from gearshift.sim.sampling import RequestDraws, ServiceSampler
from gearshift.sim.simulator import serve_fixed
from gearshift.types import Allocation

T = TypeVar("T")


def plan_table(profile: Profile, deadline_ms: float, settings: PlanSettings = DEFAULT_PLAN,
               fallbacks: bool = True, seed: int = 0, progress: Progress | None = None
               ) -> PolicyTable:
    """The policy table for `deadline_ms` on `settings.points` default loads, with the
    profile's fallback ladders (as the `table` policy serves) or without (the paper's plan,
    `table:paper`, served by its ranges alone: no speed grids)."""
    rates = default_rates(profile, settings.points)
    seconds = min(settings.duration_s, settings.max_requests / max(rates))
    return plan(profile, deadline_ms, rates,
                replace(settings, duration_s=seconds,
                        speeds=settings.speeds if fallbacks else ()),
                seed, progress, fallback_ladders(profile) if fallbacks else None)


def default_rates(profile: Profile, points: int = 100) -> list[float]:
    """`points` loads (requests/s) from 2 % of the smallest measured capacity to 1.3 x the
    largest."""
    caps = [e.throughput_rps for e in profile.entries]
    return [float(r) for r in np.linspace(0.02 * min(caps), 1.3 * max(caps), points)]


def plan(
    profile: Profile,
    deadline_ms: float,
    rates_rps: list[float] | None = None,
    settings: PlanSettings = DEFAULT_PLAN,
    seed: int = 0,
    progress: Progress | None = None,
    fallbacks: dict[str, tuple[str, ...]] | None = None,
) -> PolicyTable:
    """Evaluate every (load, variant, allocation) and build the policy table for `deadline_ms`,
    each candidate judged against `settings.headroom` x `deadline_ms` (a margin for service
    times that move; the table records both).

    `rates_rps`: loads (requests/s), default `default_rates(profile, settings.points)`.
    `progress(done, total, message)` is called after each load of each grid (the profile's,
    then one per `settings.speeds`, planned whether or not there are fallbacks).
    `fallbacks`: see the module docstring; the table records them, and the `table` policy's
    decisions carry them."""
    rates = (sorted(rates_rps) if rates_rps is not None
             else default_rates(profile, settings.points))
    if not rates or rates[0] <= 0:
        raise ValueError("rates_rps must be a non-empty list of loads > 0 requests/s")
    ladders = fallbacks or {}
    headroom = settings.headroom
    grids = len(settings.speeds) + 1

    def part(k: int, label: str) -> Progress | None:
        if progress is None:
            return None
        call = progress
        return lambda done, _total, msg: call(k * len(rates) + done, grids * len(rates),
                                              label + msg)

    grid = evaluate_grid(profile, deadline_ms * headroom, rates, seed, settings, part(0, ""),
                         ladders)
    slower = [SpeedGrid(speed=speed, grid=evaluate_grid(
        profile, deadline_ms * headroom / speed, rates, seed, settings,
        part(k + 1, f"{speed:g} x slower host: "), ladders))
        for k, speed in enumerate(settings.speeds)]
    scores = robust_scores(grid, rates, settings)
    if ladders:
        scores = bursts_only(grid, scores, settings.max_fallback_share)
    choices = [choose(points, profile, settings.tie_tol, score)
               for points, score in zip(_by_rate(grid, rates), _by_rate(scores, rates),
                                        strict=True)]
    return PolicyTable(
        application=profile.application,
        pool_digest=profile.pool_digest,
        deadline_ms=deadline_ms,
        cores=profile.cores,
        ranges=merge_ranges(rates, choices),
        grid=grid,
        speed_grids=slower,
        fallbacks={v: list(f) for v, f in ladders.items()},
        headroom=headroom,
        max_fallback_share=settings.max_fallback_share,
    )


def evaluate_grid(
    profile: Profile, deadline_ms: float, rates: list[float], seed: int,
    settings: PlanSettings, progress: Progress | None = None,
    fallbacks: dict[str, tuple[str, ...]] | None = None,
) -> list[GridPoint]:
    """One GridPoint per (rate, candidate), rates in the given order, candidates in profile
    order; each candidate served with its `fallbacks` (none by default)."""
    ladders = fallbacks or {}
    sampler = ServiceSampler.from_profile(profile)
    unit, draws = _common_draws(max(rates), settings.duration_s, seed)
    grid: list[GridPoint] = []
    for i, rate in enumerate(rates):
        arrivals = unit[: np.searchsorted(unit, rate * settings.duration_s)] / rate
        for e in profile.entries:
            cols = serve_fixed(sampler, e.variant, e.allocation, arrivals, deadline_ms, draws,
                               fallbacks=ladders.get(e.variant, ()))
            grid.append(grid_point(cols, rate, e.variant, e.allocation, profile, settings))
        if progress is not None:
            progress(i + 1, len(rates), f"{rate:.1f} rps")
    return grid


def _common_draws(max_rate: float, duration_s: float, seed: int) -> tuple[
    np.ndarray, RequestDraws
]:
    """A unit-rate Poisson process long enough for `max_rate` over `duration_s`, and draws."""
    arrivals_seed, draws_seed = np.random.SeedSequence(seed).spawn(2)
    mean = max_rate * duration_s
    n = int(mean + 6 * math.sqrt(mean) + 10)
    unit = np.cumsum(np.random.default_rng(arrivals_seed).exponential(1.0, n))
    return unit, RequestDraws.draw(n, draws_seed)


def grid_point(
    cols: RequestColumns, rate: float, variant: str, allocation: Allocation, profile: Profile,
    settings: PlanSettings,
) -> GridPoint:
    """Measure one simulated run (requests arriving after the warm-up)."""
    counted = cols.arrival_s >= settings.warmup_frac * settings.duration_s
    on_time = cols.on_time[counted]
    p_on_time = float(np.mean(on_time)) if len(on_time) else 1.0
    acc = np.array([profile.accuracy[v] for v in cols.variants] + [0.0])
    ea = (float(np.mean(np.where(on_time, acc[cols.variant_code[counted]], 0.0)))
          if len(on_time) else profile.accuracy[variant])
    answered = cols.latency_ms[counted & cols.answered]
    if len(answered) == 0:  # no arrivals counted: report the unloaded latency
        entry = profile.entry(variant, allocation)
        answered = np.asarray(entry.service_ms) + float(np.mean(profile.overhead_ms))
    p50, p99 = np.percentile(answered, [50, 99])
    served = cols.variant_code[counted & cols.answered]
    own = cols.variants.index(variant)
    return GridPoint(
        rate_rps=rate, variant=variant, replicas=allocation.replicas,
        threads=allocation.threads, p_on_time=p_on_time,
        effective_accuracy=ea,
        p50_ms=float(p50), p99_ms=float(p99),
        fallback_share=float(np.mean(served != own)) if len(served) else 0.0,
    )


def _by_rate(grid: list[T], rates: list[float]) -> list[list[T]]:
    per = len(grid) // len(rates)
    return [grid[i * per:(i + 1) * per] for i in range(len(rates))]


def robust_scores(grid: list[GridPoint], rates: list[float], settings: PlanSettings) -> list[
    float
]:
    """Each grid point's effective accuracy averaged over nearby loads (module docstring), in
    grid order."""
    r = np.asarray(rates, dtype=float)
    per = len(grid) // len(rates)
    ea = np.array([p.effective_accuracy for p in grid]).reshape(len(rates), per)
    sd = np.maximum(settings.rel_uncertainty * r, np.sqrt(r / settings.period_s))
    w = np.exp(-0.5 * ((r[None, :] - r[:, None]) / sd[:, None]) ** 2)
    smoothed = (w @ ea) / w.sum(axis=1, keepdims=True)
    return [float(x) for x in smoothed.reshape(-1)]


def bursts_only(grid: list[GridPoint], scores: list[float], max_share: float) -> list[float]:
    """Scores with every candidate whose fallbacks answer more than `max_share` of its requests
    at that load set to 0. With fallbacks the simulator shows a variant in sustained overload
    doing well, its excess answered by lighter ones; live, those run beside it on a saturated
    machine and take longer than their profile says (ResNet-18 next to ResNet-50: 80-100 ms
    against 57). A candidate a little past its measured throughput, whose queue a long deadline
    absorbs, or without fallbacks at all, stays eligible, unlike with a cut at the measured
    throughput (compared in BENCHMARKS.md: within 0.003 of each other from 150 to 900 ms, the
    share rule ahead at long deadlines; at 75 ms either can win by luck of the margin)."""
    return [0.0 if p.fallback_share > max_share else s
            for p, s in zip(grid, scores, strict=True)]


def choose(points: list[GridPoint], profile: Profile, tie_tol: float,
           scores: list[float] | None = None) -> GridPoint:
    """The best candidate at one load by `scores` (default: nominal effective accuracy); rules
    in the module docstring."""
    score = scores or [p.effective_accuracy for p in points]
    best = max(score)
    if best <= 0.0:
        return max(points, key=lambda p: profile.entry(p.variant, _alloc(p)).throughput_rps)
    tied = [(p, s) for p, s in zip(points, score, strict=True) if s >= best - tie_tol]
    return min(tied, key=lambda ps: tie_order(ps[0].replicas, ps[0].threads, ps[1]))[0]


def tie_order(replicas: int, threads: int, score: float) -> tuple[int, int, float]:
    """Sort key among tied candidates, smallest first: fewer cores, then more replicas (more
    headroom for a rise in load), then the higher score. The planner and the table
    controller break ties alike."""
    return replicas * threads, -replicas, -score


def _alloc(p: GridPoint | PolicyRange) -> Allocation:
    return Allocation(p.replicas, p.threads)


def merge_ranges(rates: list[float], choices: list[GridPoint]) -> list[PolicyRange]:
    """Merge contiguous equal choices; boundaries halfway between grid loads. A range reports
    the worst p_on_time and effective accuracy seen on its grid loads."""
    groups: list[list[int]] = []
    for i, c in enumerate(choices):
        if groups and _key(choices[groups[-1][0]]) == _key(c):
            groups[-1].append(i)
        else:
            groups.append([i])
    ranges = []
    for g, idx in enumerate(groups):
        lo = 0.0 if g == 0 else (rates[idx[0] - 1] + rates[idx[0]]) / 2
        hi = math.inf if g == len(groups) - 1 else (rates[idx[-1]] + rates[idx[-1] + 1]) / 2
        first = choices[idx[0]]
        ranges.append(PolicyRange(
            min_rps=lo, max_rps=hi, variant=first.variant, replicas=first.replicas,
            threads=first.threads,
            p_on_time=min(choices[i].p_on_time for i in idx),
            effective_accuracy=min(choices[i].effective_accuracy for i in idx),
        ))
    return ranges


def _key(p: GridPoint) -> tuple[str, int, int]:
    return (p.variant, p.replicas, p.threads)
