"""Live service times and overheads put into a profile (the calibration's pure part)."""

from __future__ import annotations

import pytest

from gearshift.experiment.calibrate import (
    MIN_ENTRY_SAMPLES,
    MIN_LOADED_SAMPLES,
    CalibrationSettings,
    capped,
    with_overhead,
    with_rated_overhead,
    with_service,
)
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


def test_a_fast_entry_keeps_its_overhead_by_rate_and_no_entry_outruns_the_http_path() -> None:
    """Where the front end is the bottleneck, its cost grows with the rate and depends on what
    the replicas beside it run: an entry's runs at several rates are kept, lowest rate first,
    each only with enough samples; every throughput is capped at the rate the server answers
    through HTTP."""
    profile = make_profile({("l", A2): constant_ms(0.3), ("s", A2): constant_ms(0.1)},
                           {"l": 0.92, "s": 0.90}, overhead_ms=[1.0])
    enough, few = [2.0] * MIN_ENTRY_SAMPLES, [2.0] * (MIN_ENTRY_SAMPLES - 1)
    runs = {("l", 2, 1): [(1200.0, [9.0] * MIN_ENTRY_SAMPLES), (400.0, enough), (800.0, few)]}
    out = capped(with_rated_overhead(profile, runs), 1500.0)
    rated = out.entry("l", A2).overhead_by_rate
    assert [(r.rate_rps, r.samples_ms[0]) for r in rated] == [(400.0, 2.0), (1200.0, 9.0)]
    assert out.entry("s", A2).overhead_by_rate == []
    assert [e.throughput_rps for e in out.entries] == [1500.0, 1500.0]
    assert capped(profile, 1e9).entries == profile.entries


def test_a_calibration_run_is_long_enough_for_a_tail_when_requests_come_fast() -> None:
    s = CalibrationSettings(seconds=2.5, min_count=12, max_count=40, min_seconds=1.0)
    assert s.count(2.0) == 12  # a slow entry: at least min_count
    assert s.count(10.0) == 25  # seconds' worth
    assert s.count(50.0) == 50  # capped at max_count, but a second's worth is more
    assert s.count(1800.0) == 1800  # a fast one: a second's worth
