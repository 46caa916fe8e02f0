"""Policies on synthetic observations (fakes, no server): table lookup reacts to steps within two
periods and does not flap at a boundary; the queue-aware policy shifts to a faster variant on a
backlog and back once it drains; static and schedule policies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from gearshift.control.factory import make_policy
from gearshift.control.policies import (
    QueueAwarePolicy,
    RateState,
    SchedulePolicy,
    StaticPolicy,
    TablePolicy,
    candidates_from,
)
from gearshift.errors import SpecError
from gearshift.planning.ladders import fallback_ladders
from gearshift.planning.table import PolicyRange, PolicyTable
from gearshift.policy import Controller, Observation
from gearshift.profiling.profile import Profile
from gearshift.sim.simulator import simulate
from gearshift.types import Allocation, Decision
from tests.synthetic import constant_ms, make_profile

A1, A2 = Allocation(1, 1), Allocation(2, 1)
HEAVY, LIGHT = Decision("heavy", A1), Decision("light", A2)


def two_range_table(boundary_rps: float) -> PolicyTable:
    def rng(lo: float, hi: float, d: Decision) -> PolicyRange:
        return PolicyRange(min_rps=lo, max_rps=hi, variant=d.variant,
                           replicas=d.allocation.replicas, threads=d.allocation.threads,
                           p_on_time=1.0, effective_accuracy=0.8)

    return PolicyTable(application="t", pool_digest="t", deadline_ms=300.0, cores=2,
                       ranges=[rng(0.0, boundary_rps, HEAVY), rng(boundary_rps, math.inf, LIGHT)])


def obs(t_s: float, arrivals: int, backlog: int = 0, current: Decision = HEAVY) -> Observation:
    return Observation(t_s=t_s, period_s=1.0, arrivals=arrivals, queue_length=backlog,
                       in_flight=0, completed=arrivals, missed=0, latency_p99_ms=10.0,
                       current=current)


def drive(policy: TablePolicy, rates: list[float], seed: int) -> list[int]:
    """Range index after each period, for Poisson counts at `rates` (requests/s)."""
    counts = np.random.default_rng(seed).poisson(rates)
    state = policy.initial_state()
    out = []
    for k, n in enumerate(counts):
        _, state = policy.decide(obs(k + 1.0, int(n)), state)
        out.append(state.range_index)
    return out


def switches(path: list[int]) -> int:
    return sum(a != b for a, b in itertools.pairwise(path))


# --- TablePolicy ----------------------------------------------------------------------------


STEPS = [(20.0, 10.0, 60.0), (100.0, 50.0, 150.0)]  # boundary, low, high (requests/s)


@pytest.mark.parametrize(("boundary", "low", "high"), STEPS)
def test_step_up_switches_within_two_periods(boundary: float, low: float, high: float) -> None:
    policy = TablePolicy(two_range_table(boundary))
    for seed in range(30):
        path = drive(policy, [low] * 30 + [high] * 10, seed)
        assert path[29] == 0 and path[31] == 1, seed  # 30 = first period at the new rate


@pytest.mark.parametrize(("boundary", "low", "high"), STEPS)
def test_step_down_switches_within_two_periods(boundary: float, low: float, high: float) -> None:
    policy = TablePolicy(two_range_table(boundary))
    for seed in range(30):
        path = drive(policy, [high] * 30 + [low] * 10, seed)
        assert path[29] == 1 and path[31] == 0, seed


@pytest.mark.parametrize("boundary", [20.0, 100.0])
def test_hysteresis_damps_flapping_at_a_boundary(boundary: float) -> None:
    periods, seeds = 300, 20
    hysteresis = TablePolicy(two_range_table(boundary))
    bare = TablePolicy(two_range_table(boundary), alpha_up=0.8, alpha_down=0.8, band=0.0,
                       noise_z=0.0)
    with_h = sum(switches(drive(hysteresis, [boundary] * periods, s)) for s in range(seeds))
    without = sum(switches(drive(bare, [boundary] * periods, s)) for s in range(seeds))
    # A switch is a routing change, so the defaults favour following the load over damping:
    # at a boundary they still switch in ~10-25 % of periods, the bare estimate in ~40 %.
    assert with_h < 0.65 * without
    assert with_h / (periods * seeds) < 0.3


def test_table_policy_state_is_logged_by_the_controller() -> None:
    controller = Controller(TablePolicy(two_range_table(50.0)))
    assert controller.step(obs(1.0, 10)) == Decision("heavy", A1, controller.log[0].decision.reason)
    assert controller.step(obs(2.0, 200)).variant == "light"
    assert controller.log[-1].state == {"smoothed_rps": 200.0, "range_index": 1}  # a jump
    controller.step(obs(3.0, 190))  # within noise: smoothed, falling with alpha_down
    assert controller.log[-1].state == {"smoothed_rps": pytest.approx(192.0), "range_index": 1}
    assert isinstance(controller.state, RateState)


def test_a_wrapped_state_is_logged_field_by_field() -> None:
    """queue-aware's state wraps its rate policy's: the log shows the rate policy's fields
    and the table's own choice while a rescue is in force."""
    policy = QueueAwarePolicy(two_range_table(60.0), three_variant_profile())
    controller = Controller(policy)
    controller.step(obs(1.0, 5))
    assert controller.log[-1].state == {"smoothed_rps": 5.0, "range_index": 0,
                                        "table_choice": None}
    assert controller.step(obs(2.0, 5, backlog=10)).variant == "mid"  # a rescue
    assert controller.log[-1].state["table_choice"] == "('heavy', 1, 1)"


# --- QueueAwarePolicy -----------------------------------------------------------------------


def three_variant_profile() -> Profile:
    """heavy 50 ms (0.9), mid 20 ms (0.8), light 5 ms (0.7); all on one replica except light."""
    return make_profile(
        {("heavy", A1): constant_ms(50.0), ("mid", A1): constant_ms(20.0),
         ("light", A2): constant_ms(5.0)},
        {"heavy": 0.9, "mid": 0.8, "light": 0.7},
        overhead_ms=[1.0],
    )


def test_queue_aware_shifts_on_backlog_and_back_when_it_drains() -> None:
    policy = QueueAwarePolicy(two_range_table(60.0), three_variant_profile())
    state = policy.initial_state()
    d, state = policy.decide(obs(1.0, 5), state)
    assert d.variant == "heavy"  # table choice at 5 rps, no backlog
    d, state = policy.decide(obs(2.0, 5, backlog=10), state)
    assert d.variant == "mid" and d.reason.startswith("queue")  # heavy: 10 x 50 ms > 300 ms
    d, state = policy.decide(obs(3.0, 5, backlog=30), state)
    assert d.variant == "light"  # mid: 30 x 20 ms > 300 ms
    assert state.rate.smoothed_rps < 10  # the rate estimate has not moved
    d, state = policy.decide(obs(4.0, 5, backlog=1000), state)
    assert d.variant == "heavy"  # nothing fits: the table's choice, fallbacks clear the rest
    d, state = policy.decide(obs(5.0, 5, backlog=0), state)
    assert d == Decision("heavy", A1, d.reason) and d.reason.startswith("table")


def test_queue_aware_reacts_to_a_burst_the_rate_estimate_misses() -> None:
    profile = three_variant_profile()
    table = two_range_table(60.0)
    rng = np.random.default_rng(3)
    background = np.sort(rng.uniform(0.0, 20.0, 60))  # 3 requests/s
    burst = np.sort(rng.uniform(5.7, 5.9, 45))  # 45 requests just before the t = 6 s boundary
    arrivals = np.sort(np.concatenate([background, burst]))

    def run(policy: TablePolicy | QueueAwarePolicy) -> tuple[Decision, int]:
        res = simulate(profile, Controller(policy), arrivals, 300.0, HEAVY, seed=1)
        return res.decisions[5], int(np.count_nonzero(~res.columns.on_time))

    table_at_6, table_missed = run(TablePolicy(table))
    aware_at_6, aware_missed = run(QueueAwarePolicy(table, profile))
    assert table_at_6.variant == "heavy" and aware_at_6.variant != "heavy"
    assert aware_missed < table_missed


# --- static and schedule ----------------------------------------------------------------------


def test_static_and_schedule_policies() -> None:
    static = StaticPolicy(LIGHT)
    assert static.decide(obs(1.0, 100), static.initial_state()) == (LIGHT, None)
    schedule = SchedulePolicy((HEAVY, LIGHT, HEAVY), period_s=1.0)
    picks = [schedule.decide(obs(t, 0), None)[0] for t in (1.0, 2.0, 3.0, 9.0)]
    assert picks == [LIGHT, HEAVY, HEAVY, HEAVY]


# --- fallbacks and policy names -------------------------------------------------------------


def test_fallback_ladders_are_the_faster_less_accurate_variants_best_first() -> None:
    assert fallback_ladders(three_variant_profile()) == {
        "heavy": ("mid", "light"), "mid": ("light",), "light": ()}


def test_policy_names_build_table_paper_table_and_pinned_statics() -> None:
    profile = make_profile({("heavy", A1): constant_ms(50.0), ("light", A1): constant_ms(5.0),
                            ("heavy", A2): constant_ms(60.0), ("light", A2): constant_ms(6.0)},
                           {"heavy": 0.9, "light": 0.7}, cores=2)
    table, names = two_range_table(60.0), ["heavy", "light"]
    policy, first = make_policy("table", table, profile, names)
    assert first == Decision("heavy", A1, "table", ("light",))
    d, _ = policy.decide(obs(1.0, 5), policy.initial_state())
    assert d.fallbacks == ("light",)
    paper, first = make_policy("table:paper", table, profile, names)
    assert first.fallbacks == () and paper.decide(obs(1.0, 5), paper.initial_state())[0] \
        .fallbacks == ()
    _, pinned = make_policy("static:light@1x2", table, profile, names)
    assert pinned == Decision("light", Allocation(1, 2), "static")
    with pytest.raises(SpecError, match="does not use the 2 cores; use one of 2x1, 1x2"):
        make_policy("static:light@1x1", table, profile, names)
    with pytest.raises(SpecError, match="'2y1' is not an RxT"):
        make_policy("static:light@2y1", table, profile, names)


def test_fallbacks_rescue_a_spike_in_the_simulator() -> None:
    """A burst the table has not seen yet: with fallbacks the queued requests are answered by
    the light variant in time, without them they are dropped."""
    profile = three_variant_profile()
    arrivals = np.sort(np.r_[np.arange(5) * 0.2, 1.0 + np.arange(40) * 0.005])
    table = two_range_table(1000.0)
    ladders = fallback_ladders(profile)
    runs = {}
    for name, policy in (("paper", TablePolicy(table)),
                         ("fallbacks", TablePolicy(table, fallbacks=ladders))):
        first = Decision("heavy", A1, fallbacks=policy.fallbacks.get("heavy", ()))
        runs[name] = simulate(profile, Controller(policy), arrivals, 300.0, first, seed=0).columns
    assert int(np.sum(runs["fallbacks"].on_time)) > int(np.sum(runs["paper"].on_time)) + 4
    assert set(runs["fallbacks"].variant_names()[5:]) >= {"heavy", "mid"}


def test_queue_aware_leaves_the_table_variants_r_x_t_to_the_table() -> None:
    """A backlog the table's light 1x1 would not clear in time: the rescue may pick another
    variant, never the same one at another R x T (a handover, and slower per request)."""
    profile = make_profile(
        {("heavy", A1): constant_ms(50.0), ("light", A1): constant_ms(20.0),
         ("light", A2): constant_ms(30.0)},
        {"heavy": 0.9, "light": 0.7}, overhead_ms=[1.0])
    table = PolicyTable(application="synthetic", pool_digest="synthetic", deadline_ms=60.0,
                        cores=1, ranges=[PolicyRange(min_rps=0.0, max_rps=math.inf,
                                                     variant="light", replicas=1, threads=1,
                                                     p_on_time=1.0, effective_accuracy=0.7)])
    policy = QueueAwarePolicy(table, profile)
    d, _ = policy.decide(obs(1.0, 5, backlog=2, current=Decision("light", A1)),
                         policy.initial_state())
    assert d.variant == "light" and d.allocation == A1 and d.reason.startswith("table")


def test_queue_aware_leaves_a_backlog_the_fallbacks_can_drain_to_them() -> None:
    """heavy's fallback (mid, 20 ms) takes the queue's head at dispatch: a backlog of 10 that
    heavy alone would not clear in 300 ms is left to it; one of 20, which mid would not clear
    either, is rescued with another variant."""
    profile = three_variant_profile()
    table = two_range_table(60.0)
    policy = QueueAwarePolicy(table, profile, TablePolicy(table, fallbacks={"heavy": ("mid",)}))
    state = policy.initial_state()
    d, state = policy.decide(obs(1.0, 5, backlog=10), state)
    assert d.variant == "heavy" and d.fallbacks == ("mid",)
    # 13 x 20 ms + mid's 20: a request arriving now is answered by mid in time, though
    # heavy's 50 ms after the backlog would not be (no rescue: the fallback serves it)
    d, state = policy.decide(obs(1.5, 5, backlog=13), state)
    assert d.variant == "heavy" and d.reason.startswith("table")
    d, state = policy.decide(obs(2.0, 5, backlog=20), state)
    assert d.variant == "light" and d.reason.startswith("queue")


def test_no_rescue_where_the_queue_is_not_what_makes_a_request_late() -> None:
    """A rescue is for a backlog: where even the table's last rung would be late with nothing
    queued (here 260 ms of overhead makes heavy's 50 ms miss 300 ms), the table, which planned
    with the path's cost, is left its choice; and a path-bound candidate, whose lateness is the
    path's and not the queue's, is never a rescue (a Fashion-MNIST profile whose busy overhead
    was 9.4 ms of a 10 ms deadline had `queue-aware` rescue to fnet-l period after period, at
    0.30 effective accuracy against the table's 0.88)."""
    slow_path = make_profile(
        {("heavy", A1): constant_ms(50.0), ("mid", A1): constant_ms(20.0),
         ("light", A2): constant_ms(5.0)},
        {"heavy": 0.9, "mid": 0.8, "light": 0.7}, overhead_ms=[260.0])
    policy = QueueAwarePolicy(two_range_table(60.0), slow_path)
    d, _ = policy.decide(obs(1.0, 5, backlog=10), policy.initial_state())
    assert d.variant == "heavy" and d.reason.startswith("table")  # light would fit: no rescue

    profile = three_variant_profile()
    bound = profile.model_copy(update={"entries": [
        e.model_copy(update={"path_bound": e.variant == "mid"}) for e in profile.entries]})
    for p, rescued in ((profile, "mid"), (bound, "light")):
        policy = QueueAwarePolicy(two_range_table(60.0), p)
        d, _ = policy.decide(obs(1.0, 5, backlog=10), policy.initial_state())
        assert d.variant == rescued and d.reason.startswith("queue")


def test_a_rescue_on_another_allocation_waits_for_the_replicas_in_force() -> None:
    """heavy (one replica, 50 ms) in force at 300 ms: light (two replicas, 5 ms) answers a
    backlog of 90 in 2.5 x 89 + 5 + 1 ms and one of 110 in 279 ms, but its replicas start only
    once heavy's hands its core over, 50 ms on: the first is rescued, the second is not (mid,
    on heavy's replica, fits neither)."""
    policy = QueueAwarePolicy(two_range_table(60.0), three_variant_profile())
    d, _ = policy.decide(obs(1.0, 5, backlog=90), policy.initial_state())
    assert d.variant == "light" and d.reason.startswith("queue")
    d, _ = policy.decide(obs(1.0, 5, backlog=110), policy.initial_state())
    assert d.variant == "heavy" and d.reason.startswith("table")


def test_a_slower_host_brings_the_rescue_forward() -> None:
    """The predicted latency scales the service times (not the overhead) by how much slower
    than profiled the host acts."""
    heavy = next(c for c in candidates_from(three_variant_profile())
                 if c.decision.variant == "heavy")  # one replica, 50 ms
    assert heavy.predicted_latency_s(3, 0.001) == pytest.approx(3 * 0.050 + 0.050 + 0.001)
    assert heavy.predicted_latency_s(3, 0.001, slow=1.5) == pytest.approx(
        1.5 * (3 * 0.050 + 0.050) + 0.001)
