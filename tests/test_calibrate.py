"""Putting live service times into a profile (the experiment's calibration, pure part)."""

from __future__ import annotations

import pytest

from gearshift.experiment.calibrate import with_service
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
