"""One dispatch rule: the live pool and the simulator, given the same service samples, the same
ladder and the same moment (how long a request waited, how long it has left), serve it with the
same variant or drop it alike. Either side changed alone fails here."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearshift.dispatch import FREE_WAIT_S, choose_rung
from gearshift.engine.pool import ReplicaPool, _Job
from gearshift.engine.pool_types import PoolSettings
from gearshift.engine.service_stats import RECENT, ServiceStats
from gearshift.sim.engine import initial_state, make_inputs, serve
from gearshift.sim.sampling import RequestDraws, ServiceSampler
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import PoolSpec
from tests.synthetic import make_profile

A1 = Allocation(1, 1)
OVERHEAD_MS = 3.0


def sim_choice(spec: PoolSpec, samples: dict[str, list[float]], ladder: tuple[str, ...],
               waited_s: float, deadline_ms: float) -> str:
    """The variant the simulator serves a request with that arrived at 0 and finds its one
    replica free at `waited_s` ('' if dropped)."""
    accuracy = {v.name: v.accuracy.value for v in spec.variants}
    profile = make_profile({(v, A1): s for v, s in samples.items()}, accuracy,
                           overhead_ms=[OVERHEAD_MS], cores=1)
    sampler = ServiceSampler.from_profile(profile)
    inputs = make_inputs(sampler, np.zeros(1), deadline_ms, RequestDraws.draw(1, 0))
    state = initial_state(Decision(ladder[0], A1, fallbacks=ladder[1:]), t_s=waited_s)
    _, blocks = serve(inputs, state, 1, math.inf)
    return blocks[0].served_by()[0]


def route(pool: ReplicaPool, decision: Decision) -> None:
    """Apply `decision` as if the pool served its allocation already (so no replica starts)."""
    pool._life.allocation = decision.allocation

    async def main() -> None:
        await pool.apply(decision)

    asyncio.run(main())


def pool_choice(spec: PoolSpec, samples: dict[str, list[float]], ladder: tuple[str, ...],
                waited_s: float, deadline_ms: float) -> str:
    """The variant the live pool's dispatch picks for the same request ('' if dropped)."""
    pool = ReplicaPool(spec, PoolSettings(
        service_samples_ms={(v, 1): tuple(s) for v, s in samples.items()},
        overhead_ms=OVERHEAD_MS))
    route(pool, Decision(ladder[0], A1, fallbacks=ladder[1:]))
    job = _Job(0, None, {}, asyncio.get_event_loop_policy().new_event_loop().create_future(),
               enqueued_s=0.0, expires_s=deadline_ms / 1000.0)
    variant, why = pool._choose(job, 1, now=waited_s)
    return "" if why else variant


service = st.lists(st.floats(1.0, 200.0), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), waited_ms=st.one_of(st.just(0.0), st.floats(0.0, 400.0)),
       deadline_ms=st.floats(5.0, 500.0), rungs=st.integers(1, 3))
def test_pool_and_simulator_dispatch_alike(tiny_spec: PoolSpec, data: st.DataObject,
                                           waited_ms: float, deadline_ms: float,
                                           rungs: int) -> None:
    by_accuracy = sorted(tiny_spec.variants, key=lambda v: -v.accuracy.value)
    ladder = tuple(v.name for v in by_accuracy[:rungs])
    samples = {v: data.draw(service, label=v) for v in ladder}
    waited_s = waited_ms / 1000.0
    assert (pool_choice(tiny_spec, samples, ladder, waited_s, deadline_ms)
            == sim_choice(tiny_spec, samples, ladder, waited_s, deadline_ms))


def test_the_rule_itself() -> None:
    safe, slack = np.array([0.20, 0.08]), np.array([0.15, 0.05])
    assert choose_rung(0.0, 0.01, safe, slack) == 0  # found a replica free: always served
    assert choose_rung(0.1, -0.01, safe, slack) == -1  # deadline passed: never
    assert choose_rung(0.1, 0.25, safe, slack) == 0
    assert choose_rung(0.1, 0.10, safe, slack) == 1  # only the fallback is likely in time
    assert choose_rung(0.1, 0.06, safe, slack) == 1  # ... or in time at its median
    assert choose_rung(0.1, 0.04, safe, slack) == -1
    assert choose_rung.py_func(FREE_WAIT_S, 0.10, safe, slack) == 1  # the pool's copy


def test_service_stats_follow_the_replies_and_start_from_the_profile() -> None:
    seeded = ServiceStats(PoolSettings(service_samples_ms={("a", 1): (100.0,) * 5},
                                       overhead_ms=2.0))
    assert seeded.rung_times_s("a", 1, 0.9) == pytest.approx((0.102, 0.100))
    for _ in range(3):
        seeded.record("a", 1, 50.0)
    assert seeded.rung_times_s("a", 1, 0.9) == pytest.approx((0.052, 0.050))
    for _ in range(RECENT):
        seeded.record("a", 1, 80.0)
    assert seeded.rung_times_s("a", 1, 0.9) == pytest.approx((0.082, 0.080))  # last 16 only
    expected = ServiceStats(PoolSettings(expected_service_ms={("a", 1): 40.0}))
    assert expected.rung_times_s("a", 1, 0.9) == pytest.approx((0.040, 0.040))
    assert ServiceStats(PoolSettings(drop="expired")).rung_times_s("a", 1, 0.9) == (0.0, 0.0)


def test_apply_keeps_the_decisions_fallbacks(tiny_spec: PoolSpec) -> None:
    """`apply(decision)` serves a late request with the decision's fallback; a decision
    without fallbacks drops it."""
    heavy, light = (v.name for v in sorted(tiny_spec.variants, key=lambda v: -v.accuracy.value)
                    [:2])
    samples = {heavy: [100.0] * 5, light: [1.0] * 5}
    pool = ReplicaPool(tiny_spec, PoolSettings(
        service_samples_ms={(v, 1): tuple(s) for v, s in samples.items()}))
    route(pool, Decision(heavy, A1, fallbacks=(light,)))
    job = _Job(0, None, {}, asyncio.get_event_loop_policy().new_event_loop().create_future(),
               enqueued_s=0.0, expires_s=0.060)
    assert pool._choose(job, 1, now=0.010) == (light, "")
    route(pool, Decision(heavy, A1))
    assert pool._choose(job, 1, now=0.010)[1].startswith("deadline cannot be met")
