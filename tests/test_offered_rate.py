"""The pool's offered rate (`engine.offered_rate`) against the simulator's
(`sim.sampling`): for every request, at its own enqueue time, the same figures."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gearshift.dispatch import RATE_WINDOW_S, UPGRADE_WINDOW_S
from gearshift.engine.offered_rate import OfferedRate
from gearshift.sim.sampling import offered_rate_rps, upgrade_rate_rps

gaps = st.lists(st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.25, 0.3, 1.0, 2.0]),
                min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(gaps=gaps)
def test_the_pool_reads_the_rates_the_simulator_does(gaps: list[float]) -> None:
    """Times on the windows' edges (gaps of exactly a quarter second and a second, bursts of
    equal times) included."""
    arrival_s = np.cumsum(gaps)
    rate = OfferedRate()
    second, upgrades = [], []
    for t in arrival_s.tolist():
        rate.record(t)
        upgrades.append(rate.for_upgrades(t))
        second.append(rate.per_second(t))
    assert upgrades == upgrade_rate_rps(arrival_s).tolist()
    assert second == offered_rate_rps(arrival_s).tolist()


def test_a_window_forgets_what_is_at_or_before_its_start() -> None:
    rate = OfferedRate()
    for t in (0.0, 0.5, 0.75, 0.9):
        rate.record(t)
    assert rate.for_upgrades(0.9) == 2 / UPGRADE_WINDOW_S  # 0.75 and 0.9 beat the second's 4
    assert rate.per_second(1.0) == 3 / RATE_WINDOW_S  # 0.0 is a second old: gone
    assert rate.for_upgrades(1.25) == 3 / RATE_WINDOW_S  # none in (1.0, 1.25]: the second's
    assert rate.per_second(2.0) == 0.0
