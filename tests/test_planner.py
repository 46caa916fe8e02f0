"""Planner: the known answer on a synthetic profile, range merging and ties, determinism,
agreement with the simulator, and the characterisation figures."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from gearshift.planning.planner import (
    PlanSettings,
    choose,
    default_rates,
    grid_point,
    merge_ranges,
    plan,
    plan_table,
)
from gearshift.planning.plots import plot_characterisation
from gearshift.planning.table import GridPoint, PolicyTable
from gearshift.profiling.profile import Profile
from gearshift.sim.simulator import simulate_fixed
from gearshift.types import Allocation
from tests.synthetic import make_profile

ONE_BY_TWO, TWO_BY_ONE = Allocation(1, 2), Allocation(2, 1)
DEADLINE_MS = 100.0
RATES = [float(r) for r in np.linspace(1.0, 150.0, 40)]


def uniform_ms(lo: float, hi: float, n: int = 5000) -> list[float]:
    return [float(x) for x in np.linspace(lo, hi, n)]


@pytest.fixture(scope="module")
def profile() -> Profile:
    """heavy (0.9) and light (0.7) on 2 cores. With two threads a request is faster (heavy
    1x2: 35-45 ms, always within 100 ms) but with two replicas there is more capacity (heavy
    2x1: 70-130 ms, half of them late even unloaded; light 2x1: 14-18 ms, 125 requests/s)."""
    return make_profile(
        {
            ("heavy", ONE_BY_TWO): uniform_ms(35, 45),
            ("heavy", TWO_BY_ONE): uniform_ms(70, 130),
            ("light", ONE_BY_TWO): uniform_ms(9, 11),
            ("light", TWO_BY_ONE): uniform_ms(14, 18),
        },
        {"heavy": 0.9, "light": 0.7},
        cores=2,
    )


@pytest.fixture(scope="module")
def table(profile: Profile) -> PolicyTable:
    return plan(profile, DEADLINE_MS, RATES, PlanSettings(duration_s=30.0, headroom=1.0), seed=0)


def choice(table: PolicyTable, rate_rps: float) -> tuple[str, Allocation]:
    r = table.ranges[table.lookup(rate_rps)]
    return r.variant, Allocation(r.replicas, r.threads)


def test_heavy_at_low_load_light_with_more_replicas_at_high_load(table: PolicyTable) -> None:
    assert choice(table, 2.0) == ("heavy", ONE_BY_TWO)
    assert choice(table, 8.0) == ("heavy", ONE_BY_TWO)
    assert choice(table, 60.0) == ("light", TWO_BY_ONE)
    assert choice(table, 115.0) == ("light", TWO_BY_ONE)  # light 1x2 saturates at 100 rps
    assert choice(table, 10_000.0) == ("light", TWO_BY_ONE)


def test_ranges_tile_the_load_axis(table: PolicyTable) -> None:
    ranges = table.ranges
    assert ranges[0].min_rps == 0.0 and math.isinf(ranges[-1].max_rps)
    for a, b in itertools.pairwise(ranges):
        assert a.max_rps == b.min_rps and a.min_rps < a.max_rps
        assert (a.variant, a.replicas, a.threads) != (b.variant, b.replicas, b.threads)
    assert len(table.grid) == len(RATES) * 4
    for p in table.grid:
        assert p.effective_accuracy == pytest.approx(p.p_on_time * {"heavy": 0.9,
                                                                    "light": 0.7}[p.variant])


def test_grid_agrees_with_an_independent_simulation(table: PolicyTable, profile: Profile) -> None:
    rate = RATES[25]  # ~97 requests/s: light 2x1 at 78 % utilisation
    point = next(p for p in table.grid if p.rate_rps == rate and p.variant == "light"
                 and p.replicas == 2)
    arrivals = np.cumsum(np.random.default_rng(9).exponential(1.0 / rate, int(rate * 30)))
    cols = simulate_fixed(profile, "light", TWO_BY_ONE, arrivals, DEADLINE_MS, seed=9)
    independent = grid_point(cols, rate, "light", TWO_BY_ONE, profile,
                             PlanSettings(duration_s=float(arrivals[-1])))
    assert point.p_on_time == pytest.approx(independent.p_on_time, abs=0.03)
    assert point.p99_ms == pytest.approx(independent.p99_ms, rel=0.15)


def test_dropped_requests_count_as_late(profile: Profile) -> None:
    # 2.4 x light 2x1 capacity
    t = plan(profile, DEADLINE_MS, [300.0], PlanSettings(duration_s=20.0, headroom=1.0), seed=1)
    point = next(p for p in t.grid if p.variant == "light" and p.replicas == 2)
    assert point.p_on_time < 0.5  # most are dropped; answered ones are within D + service
    assert point.p99_ms < DEADLINE_MS + 20.0


def test_impossible_deadline_still_names_the_fastest_choice(profile: Profile) -> None:
    # a deadline shorter than any service time
    t = plan(profile, 5.0, [10.0, 50.0], PlanSettings(duration_s=10.0, headroom=1.0), seed=0)
    assert all(p.effective_accuracy == 0.0 for p in t.grid)
    assert len(t.ranges) == 1 and choice(t, 10.0) == ("light", TWO_BY_ONE)  # 125 rps, highest


def test_same_seed_same_table(profile: Profile, table: PolicyTable) -> None:
    again = plan(profile, DEADLINE_MS, RATES, PlanSettings(duration_s=30.0, headroom=1.0), seed=0)
    assert again.model_dump() == table.model_dump()
    other = plan(profile, DEADLINE_MS, RATES, PlanSettings(duration_s=30.0, headroom=1.0), seed=1)
    assert other.grid != table.grid


def point(variant: str, r: int, t: int, eff: float, rate: float = 1.0) -> GridPoint:
    return GridPoint(rate_rps=rate, variant=variant, replicas=r, threads=t, p_on_time=eff,
                     effective_accuracy=eff, p50_ms=1.0, p99_ms=2.0)


def test_ties_prefer_more_replicas_then_accuracy(profile: Profile) -> None:
    tied = [point("heavy", 1, 2, 0.9000), point("heavy", 2, 1, 0.8995), point("light", 2, 1, 0.7)]
    within_tolerance = choose(tied, profile, tie_tol=0.002)
    assert (within_tolerance.variant, within_tolerance.replicas) == ("heavy", 2)
    assert choose(tied, profile, tie_tol=0.0).replicas == 1


def test_merge_ranges_by_hand() -> None:
    rates = [1.0, 2.0, 3.0, 4.0]
    picks = [point("a", 1, 1, 0.9), point("a", 1, 1, 0.8), point("b", 1, 1, 0.7),
             point("b", 1, 1, 0.6)]
    ranges = merge_ranges(rates, picks)
    assert [(r.min_rps, r.max_rps, r.variant) for r in ranges] == [
        (0.0, 2.5, "a"), (2.5, math.inf, "b")]
    assert ranges[0].effective_accuracy == 0.8  # the worst seen in the range


def test_default_rates_span_two_percent_to_130_percent(profile: Profile) -> None:
    rates = default_rates(profile)
    caps = [e.throughput_rps for e in profile.entries]
    assert len(rates) == 100
    assert rates[0] == pytest.approx(0.02 * min(caps)) and rates[-1] == pytest.approx(1.3 * max(caps))


def test_characterisation_figures_are_written(table: PolicyTable, profile: Profile,
                                              tmp_path: Path) -> None:
    paths = plot_characterisation(table, profile, tmp_path)
    assert [p.name for p in paths] == ["effective_accuracy_vs_load.png", "p99_vs_load_light.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_fallbacks_plan_for_bursts_not_for_sustained_overload(profile: Profile) -> None:
    """At twice heavy 1x2's capacity its light fallback answers most requests: a mix the
    simulator scores above light alone, but not a choice to hold (bursts_only)."""
    ladders = {"heavy": ("light",)}
    rates = [10.0, 50.0]

    def heavy_1x2(t: PolicyTable, rate: float) -> GridPoint:
        return next(p for p in t.grid if p.rate_rps == rate and p.variant == "heavy"
                    and p.replicas == 1)

    unruled = plan(profile, DEADLINE_MS, rates,
                   PlanSettings(duration_s=20.0, headroom=1.0, max_fallback_share=1.0), seed=0,
                   fallbacks=ladders)
    assert heavy_1x2(unruled, 10.0).fallback_share < 0.05
    assert heavy_1x2(unruled, 50.0).fallback_share > 0.25
    assert choice(unruled, 50.0) == ("heavy", ONE_BY_TWO)
    ruled = plan(profile, DEADLINE_MS, rates, PlanSettings(duration_s=20.0, headroom=1.0), seed=0,
                 fallbacks=ladders)
    assert choice(ruled, 10.0) == ("heavy", ONE_BY_TWO)
    assert choice(ruled, 50.0)[0] == "light"


def test_the_grid_is_planned_again_for_slower_hosts_at_the_deadline_they_leave(
        profile: Profile, table: PolicyTable) -> None:
    """Each speed grid is the grid planned at headroom x deadline / speed (the same loads and
    draws); heavy 1x2 (35-45 ms) makes nearly every deadline of 100 ms, on a host 2.5 x slower
    (40 ms left in the profile's time) only half. Progress counts every grid's loads; the
    paper's table (served by its ranges) plans none; a speed of 1 or less is refused."""
    assert [g.speed for g in table.speed_grids] == list(PlanSettings().speeds)
    settings = PlanSettings(duration_s=30.0, headroom=1.0, speeds=(2.5,))
    calls: list[tuple[int, int]] = []
    slow = plan(profile, DEADLINE_MS, RATES[:5], settings, seed=0,
                progress=lambda done, total, _msg: calls.append((done, total)))
    assert calls == [(k, 10) for k in range(1, 11)]
    at_40 = plan(profile, DEADLINE_MS / 2.5, RATES[:5], PlanSettings(
        duration_s=30.0, headroom=1.0, speeds=()), seed=0)
    assert [g.speed for g in slow.speed_grids] == [2.5] and not at_40.speed_grids
    assert slow.speed_grids[0].grid == at_40.grid
    heavy = [p.p_on_time for p in slow.speed_grids[0].grid
             if (p.variant, p.replicas) == ("heavy", 1)]
    profiled = [p.p_on_time for p in slow.grid if (p.variant, p.replicas) == ("heavy", 1)]
    assert float(np.mean(profiled)) > 0.95 and 0.3 < float(np.mean(heavy)) < 0.7
    assert not plan_table(profile, DEADLINE_MS, PlanSettings(points=5, duration_s=10.0),
                          fallbacks=False).speed_grids
    for bad in ((1.0,), (1.5, 1.2), (1.2, 1.2), (math.nan,), (math.inf,)):
        with pytest.raises(ValueError, match="speeds"):
            PlanSettings(speeds=bad)
