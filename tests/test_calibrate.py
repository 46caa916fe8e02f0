"""Live service times and overheads put into a profile (the calibration's pure part)."""

from __future__ import annotations

import numpy as np
import pytest

from gearshift.experiment.calibrate import (
    MIN_ENTRY_SAMPLES,
    MIN_LOADED_SAMPLES,
    CalibrationSettings,
    capped,
    frontend_cpu_ms,
    monotone,
    service_samples,
    typical_run,
    with_load_overhead,
    with_overhead,
    with_service,
)
from gearshift.profiling.profile import LoadOverhead
from gearshift.types import Allocation
from tests.synthetic import constant_ms, make_profile

A1, A2 = Allocation(1, 1), Allocation(2, 1)


def test_live_samples_replace_the_entry_and_scale_its_throughput() -> None:
    profile = make_profile({("heavy", A1): constant_ms(50.0), ("heavy", A2): constant_ms(60.0),
                            ("light", A1): constant_ms(5.0)}, {"heavy": 0.9, "light": 0.7})
    live = {("heavy", 2, 1): [75.0, 75.0, 90.0]}  # 80 ms on average: 4/3 of the profiled 60
    out = with_service(profile, live, "live through test")
    e = out.entry("heavy", A2)
    assert e.service_ms == [75.0, 75.0, 90.0]
    assert e.throughput_rps == pytest.approx(profile.entry("heavy", A2).throughput_rps * 0.75)
    assert out.entry("heavy", A1) == profile.entry("heavy", A1)  # no samples: kept
    assert out.entry("light", A1) == profile.entry("light", A1)
    assert out.calibration == "live through test" and profile.calibration == ""


def test_overhead_under_load_is_preferred_and_split_by_waiting() -> None:
    profile = make_profile({("m", A1): constant_ms(5.0)}, {"m": 0.7}, overhead_ms=[0.5])
    loaded_idle, loaded_busy = [4.0] * MIN_LOADED_SAMPLES, [7.0] * MIN_LOADED_SAMPLES
    out = with_overhead(profile, [2.5] * 5, loaded_idle, loaded_busy)
    assert out.overhead_ms == loaded_idle and out.overhead_busy_ms == loaded_busy
    assert out.dispatch_overhead_ms() == pytest.approx(7.0)
    few = with_overhead(profile, [2.5] * 5, [4.0] * 3, [7.0] * 3)  # too few under load
    assert few.overhead_ms == [2.5] * 5 and few.overhead_busy_ms == []
    assert few.dispatch_overhead_ms() == pytest.approx(2.5)  # the idle ones stand in
    assert with_overhead(profile, [], [], []).overhead_ms == [0.5]  # nothing measured: kept


def test_fast_entries_give_one_curve_of_the_path_by_load_and_none_outruns_the_http_path(
        ) -> None:
    """Where the front end is the bottleneck, the path's cost grows with the load on the
    cores: every run of the fast entries lands at the utilization its rate gives with its
    entry (the front end's core time plus the entry's own, per request), runs within
    LOAD_BIN share a level, a level needs MIN_ENTRY_SAMPLES; every throughput is capped at
    the rate the server answers through HTTP."""
    profile = make_profile({("l", A2): constant_ms(0.3), ("s", A2): constant_ms(0.1),
                            ("big", A2): constant_ms(50.0), ("m", A2): constant_ms(0.5)},
                           {"l": 0.92, "s": 0.90, "big": 0.95, "m": 0.91}, overhead_ms=[1.0],
                           cores=2)
    n = MIN_ENTRY_SAMPLES
    runs = {("l", 2, 1): [(400.0, [2.0] * n), (1000.0, [9.0] * n)],  # 0.8 x 1.3 ms / 2 cores
            ("s", 2, 1): [(1000.0, [3.0] * (n // 2)), (1500.0, [8.0] * n)],
            ("x", 2, 1): [(10.0, [1.0] * n)]}  # no such entry: ignored
    out = capped(with_load_overhead(profile, 1.0, runs), 1500.0)
    assert out.frontend_cpu_ms == 1.0
    assert out.utilization(out.entry("l", A2), 1000.0) == pytest.approx(0.65)
    levels = [(round(x.utilization, 4), sorted(set(x.samples_ms))) for x in out.overhead_by_load]
    # l@400: 0.26; s@1000: 0.55 and l@1000: 0.65 are 0.1 apart; s@1500: 0.825
    # s@1000 has too few samples alone; s@1500's 8 ms is raised to the 9 ms below it
    assert levels == [(0.26, [2.0]), (0.65, [9.0]), (0.825, [9.0])]
    # m had no runs by load, but its 0.5 ms of service is less than the path's 1 ms
    assert [e.path_bound for e in out.entries] == [True, True, False, True]
    assert [e.throughput_rps for e in out.entries][:2] == [1500.0, 1500.0]
    assert capped(profile, 1e9).entries == profile.entries
    assert frontend_cpu_ms(profile, profile.entry("l", A2), 1000.0) == pytest.approx(1.7)


def test_a_calibration_run_is_long_enough_for_a_tail_when_requests_come_fast() -> None:
    s = CalibrationSettings(seconds=2.5, min_count=12, max_count=40, min_seconds=1.0)
    assert s.count(2.0) == 12  # a slow entry: at least min_count
    assert s.count(10.0) == 25  # seconds' worth
    assert s.count(50.0) == 50  # capped at max_count, but a second's worth is more
    assert s.count(1800.0) == 1800  # a fast one: a second's worth


def test_the_path_is_never_faster_at_a_higher_load() -> None:
    """Each level's quantiles are raised to the level below's: a stall in a low-load run
    carries upward, a fast high-load run does not undercut it."""
    levels = [LoadOverhead(utilization=0.3, samples_ms=[1.0, 2.0, 30.0, 3.0]),
              LoadOverhead(utilization=0.6, samples_ms=[1.5, 1.5, 1.5, 1.5]),
              LoadOverhead(utilization=0.9, samples_ms=[50.0, 60.0, 70.0, 80.0])]
    out = monotone(levels)
    assert [x.utilization for x in out] == [0.3, 0.6, 0.9]
    low, mid, high = (np.array(x.samples_ms) for x in out)
    assert sorted(low) == list(low) and np.all(mid >= low) and np.all(high >= mid)
    assert max(mid) > 19.0 and min(mid) == pytest.approx(1.5)  # the stall carried up
    assert min(high) >= 50.0 and max(high) <= 80.0  # already slower: its own


def test_a_level_is_the_typical_run_not_one_runs_stall() -> None:
    calm = [1.0] * 100
    stalled = [1.0] * 90 + [40.0] * 10  # a 40 ms stall: a tenth of the run late
    typical = np.array(typical_run([calm, stalled, calm]))
    assert len(typical) == 100 and typical.max() == pytest.approx(1.0)
    two = np.array(typical_run([calm, stalled]))  # two runs: halfway
    assert two.max() == pytest.approx(20.5)


def test_an_entrys_service_samples_are_its_typical_run_one_stalled_run_left_out() -> None:
    """Three runs of an entry, one met by a host stall (a fifth of its requests 50 % slower):
    the samples are the calm runs'. One run is kept as it is; runs that answered nothing are
    left out, and an entry with nothing at all keeps its profiled samples (absent here)."""
    calm = [80.0 + k for k in range(40)]
    stalled = [x * 1.5 if k >= 32 else x for k, x in enumerate(calm)]
    out = service_samples({("m", 2, 1): [calm, stalled, calm], ("s", 1, 2): [[], calm],
                           ("x", 2, 1): [[], []]})
    assert out[("m", 2, 1)] == pytest.approx(calm, abs=0.5)  # quantiles of the calm runs
    assert out[("s", 1, 2)] == calm
    assert ("x", 2, 1) not in out
    two = service_samples({("m", 2, 1): [calm, stalled]})[("m", 2, 1)]
    assert max(two) < max(stalled)  # halfway: the stall's weight halved
