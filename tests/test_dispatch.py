"""One dispatch rule: the live pool and the simulator, given the same service samples, the same
ladder and the same moment (how long a request waited, how long it has left), serve it with the
same variant or drop it alike. Either side changed alone fails here."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearshift.cores import Slot
from gearshift.dispatch import (
    FREE_WAIT_S,
    PathOverhead,
    choose_rung,
    close_unresolved_upgrades,
    resolves,
    rung_times_s,
    served_as,
)
from gearshift.dispatch import ladder as dispatch_ladder
from gearshift.engine.messages import InferReply
from gearshift.engine.pool import ReplicaPool, _Job
from gearshift.engine.pool_types import PoolSettings
from gearshift.engine.roster import Replica, Roster
from gearshift.engine.service_stats import MAX_SPEED, OWN_REPLIES, RECENT, ServiceStats
from gearshift.errors import DeadlineExceeded
from gearshift.sim.engine import initial_state, make_inputs, serve
from gearshift.sim.kernel import run_fcfs
from gearshift.sim.sampling import RequestDraws, ServiceSampler, upgrade_rate_rps
from gearshift.types import Allocation, Decision, DropRule, safe_quantiles
from gearshift.zoo.spec import PoolSpec
from tests.synthetic import make_profile

A1 = Allocation(1, 1)
OVERHEAD_MS = 3.0


def decision_of(ladder: tuple[str, ...], base: int, allocation: Allocation = A1) -> Decision:
    """`ladder[base]` in force, the rungs before it its upgrades, those after its fallbacks."""
    return Decision(ladder[base], allocation, fallbacks=ladder[base + 1:],
                    upgrades=ladder[:base])


def sim_choice(spec: PoolSpec, samples: dict[str, list[float]], ladder: tuple[str, ...],
               waited_s: float, deadline_ms: float, base: int = 0) -> tuple[str, str]:
    """The variant the simulator serves a request with that arrived at 0 and finds its one
    replica free at `waited_s`, and what it is to the decision in force (both '' if
    dropped); `ladder[base]` in force."""
    accuracy = {v.name: v.accuracy.value for v in spec.variants}
    profile = make_profile({(v, A1): s for v, s in samples.items()}, accuracy,
                           overhead_ms=[OVERHEAD_MS], cores=1)
    sampler = ServiceSampler.from_profile(profile)
    inputs = make_inputs(sampler, np.zeros(1), deadline_ms, RequestDraws.draw(1, 0))
    state = initial_state(decision_of(ladder, base), t_s=waited_s)
    _, blocks = serve(inputs, state, 1, math.inf)
    block = blocks[0]
    rung = int(block.choice[0])
    return block.served_by()[0], served_as(rung, block.base) if rung >= 0 else ""


def route(pool: ReplicaPool, decision: Decision) -> None:
    """Apply `decision` as if the pool served its allocation already (so no replica starts)."""
    pool._life.allocation = decision.allocation

    async def main() -> None:
        await pool.apply(decision)

    asyncio.run(main())


def pool_choice(spec: PoolSpec, samples: dict[str, list[float]], ladder: tuple[str, ...],
                waited_s: float, deadline_ms: float, base: int = 0) -> tuple[str, str]:
    """The variant the live pool's dispatch picks for the same request, and what it is to
    the decision in force (both '' if dropped)."""
    pool = ReplicaPool(spec, PoolSettings(
        service_samples_ms={(v, 1): tuple(s) for v, s in samples.items()},
        overhead_ms=OVERHEAD_MS))
    route(pool, decision_of(ladder, base))
    job = _Job(0, None, {}, asyncio.get_event_loop_policy().new_event_loop().create_future(),
               enqueued_s=0.0, expires_s=deadline_ms / 1000.0)
    pool._offered.record(0.0)  # as `infer` enqueues it: the only arrival so far
    job.offered_rps = pool._offered.for_upgrades(0.0)
    variant, role, why = pool._choose(job, 1, now=waited_s)
    return ("", "") if why else (variant, role)


service = st.lists(st.floats(1.0, 200.0), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), waited_ms=st.one_of(st.just(0.0), st.floats(0.0, 400.0)),
       deadline_ms=st.floats(5.0, 500.0), rungs=st.integers(1, 3))
def test_pool_and_simulator_dispatch_alike(tiny_spec: PoolSpec, data: st.DataObject,
                                           waited_ms: float, deadline_ms: float,
                                           rungs: int) -> None:
    """Upgrades included: the variant in force anywhere on the ladder."""
    by_accuracy = sorted(tiny_spec.variants, key=lambda v: -v.accuracy.value)
    ladder = tuple(v.name for v in by_accuracy[:rungs])
    base = data.draw(st.integers(0, rungs - 1), label="base")
    samples = {v: data.draw(service, label=v) for v in ladder}
    waited_s = waited_ms / 1000.0
    assert (pool_choice(tiny_spec, samples, ladder, waited_s, deadline_ms, base)
            == sim_choice(tiny_spec, samples, ladder, waited_s, deadline_ms, base))


def test_the_rule_itself() -> None:
    safe, slack = np.array([0.20, 0.08]), np.array([0.15, 0.05])
    assert choose_rung(0.0, 0.01, safe, slack) == 0  # found a replica free: always served
    assert choose_rung(0.1, -0.01, safe, slack) == -1  # deadline passed: never
    assert choose_rung(0.1, 0.25, safe, slack) == 0
    assert choose_rung(0.1, 0.10, safe, slack) == 1  # only the fallback is likely in time
    assert choose_rung(0.1, 0.06, safe, slack) == 1  # ... or in time at its median
    assert choose_rung(0.1, 0.04, safe, slack) == -1
    assert choose_rung.py_func(FREE_WAIT_S, 0.10, safe, slack) == 1  # the pool's copy


def test_an_upgrade_serves_a_request_that_finds_a_replica_free_when_the_deadline_and_load_allow(
) -> None:
    """Ladder: an upgrade (tail 200 ms, median 150, 5 ms of it overhead), the variant in force
    (80 / 60), a fallback (30 / 20). A request that found a replica free is served by the
    upgrade if it fits with room for a request arriving now to wait its share of it and be
    served in force at its tail, and the offered rate leaves the upgrade under
    `UPGRADE_LOAD` of the replicas; else by the variant in force, never by the fallback."""
    safe, slack = np.array([0.20, 0.08, 0.03]), np.array([0.15, 0.06, 0.02])
    oh = 0.005

    def rung(left_s: float, rate_rps: float = 1.0, replicas: int = 1, behind: int = 0,
             waited_s: float = 0.0) -> int:
        pick = choose_rung(waited_s, left_s, safe, slack, behind, left_s, left_s, replicas, oh,
                           math.inf, 1, rate_rps)
        assert pick == choose_rung.py_func(waited_s, left_s, safe, slack, behind, left_s,
                                           left_s, replicas, oh, math.inf, 1, rate_rps)
        return pick

    assert rung(0.30) == 0  # 0.195 + 0.08 fits in 0.30
    assert rung(0.25) == 1  # the upgrade fits, a request arriving now would not
    assert rung(0.25, replicas=2) == 0  # ... unless it waits half of it: 0.0975 + 0.08
    assert rung(0.19) == 1  # the upgrade's own tail does not fit
    assert rung(0.30, rate_rps=2.6) == 1  # 2.6 req/s x 0.195 s > 0.5 of one replica
    assert rung(0.30, rate_rps=2.5) == 0
    assert rung(0.30, rate_rps=5.0, replicas=2) == 0  # 5 x 0.195 <= 0.5 x 2
    assert rung(0.30, behind=1) == 1  # a request waits behind it: no upgrade
    assert rung(0.30, waited_s=0.1) == 1  # it waited: the rule as without upgrades
    assert rung(0.01) == 1  # found a replica free: served in force, not by the fallback
    assert rung(-0.01) == -1
    # without upgrades (base 0) the same request is served as before
    assert choose_rung(0.0, 0.30, safe[1:], slack[1:]) == 0


def test_the_pools_copy_of_the_rule_calls_nothing_compiled() -> None:
    """The pool runs `choose_rung` as plain Python; a compiled function it called would be
    compiled in the serving path at its first call with each argument type (measured live:
    overheads of 150-270 ms on 1-3 % of requests while each process compiled)."""
    rule = choose_rung.py_func
    names = [n for n in rule.__code__.co_names if n in rule.__globals__]
    assert "FREE_WAIT_S" in names  # the scan sees the module's globals
    assert not [n for n in names if hasattr(rule.__globals__[n], "py_func")]


def test_the_queue_behind_closes_the_heavy_rungs() -> None:
    """Head with 0.25 s left, 5 ms of overhead, one replica: the heavy rung (median 145 ms of
    service) leaves a short queue its time, not a long one; requests behind that would be late
    whatever the head took do not count; with nothing open but the lightest, the lightest."""
    safe, slack = np.array([0.20, 0.08, 0.03]), np.array([0.15, 0.06, 0.02])
    oh = 0.005

    def rung(behind: int, first_left: float, last_left: float, replicas: int = 1) -> int:
        pick = choose_rung(0.1, 0.25, safe, slack, behind, first_left, last_left, replicas, oh)
        assert pick == choose_rung.py_func(0.1, 0.25, safe, slack, behind, first_left,
                                           last_left, replicas, oh)
        return int(pick)

    assert rung(0, math.inf, math.inf) == 0  # nobody behind
    assert rung(2, 0.5, 0.55) == 0  # 145 + 15 + 20 ms fits 550 ms
    assert rung(10, 0.5, 0.31) == 0  # 145 + 9 x 15 + 20 = 300 ms fits 310 ms, not 290 ms ...
    assert rung(10, 0.5, 0.29) == 1  # ... where 55 + 135 + 20 = 210 ms does
    assert rung(10, 0.5, 0.20) == 2  # neither does: the lightest
    assert rung(10, 0.5, 0.29, replicas=2) == 0  # two replicas share the queue
    assert rung(1, 0.10, 0.10) == 1  # the one behind needs the head light ...
    assert rung(1, 0.01, 0.01) == 0  # ... unless it is lost anyway
    assert rung(10, 0.5, 0.01) == 0  # a last one lost anyway does not count either
    one = np.array([0.15])
    assert choose_rung(0.1, 0.25, one, one, 10, 0.0, 0.0, 1, oh) == 0  # no ladder, no say


def test_a_queue_arriving_faster_than_the_lightest_rung_drains_gets_the_lightest() -> None:
    """The queue's arrival rate (`span_s` from the head's arrival to the last one's) against
    the lightest rung's drain (15 ms of replica time each, one replica): at rho >= 1 nothing
    but the lightest; below it the last one behind keeps ln(rho / WAIT_RISK) / (1 - rho)
    lightest services of headroom, the wait a stationary queue exceeds 5 % of the time (at
    rho 0.75, 162 ms where its mean is 45); two behind are too few to read a rate from."""
    safe, slack = np.array([0.20, 0.08, 0.03]), np.array([0.15, 0.06, 0.02])
    oh = 0.005

    def rung(behind: int, last_left: float, span: float) -> int:
        pick = choose_rung(0.1, 0.25, safe, slack, behind, 0.5, last_left, 1, oh, span)
        assert pick == choose_rung.py_func(0.1, 0.25, safe, slack, behind, 0.5, last_left,
                                           1, oh, span)
        return int(pick)

    assert rung(10, 0.5, math.inf) == 0  # no rate: the deadline check alone
    assert rung(10, 0.5, 1.0) == 0  # rho 0.15: 145 + 135 + 20 + 19 ms fits 500 ms
    assert rung(10, 0.5, 0.15) == 2  # rho 1: any heavier rung's time is never recovered
    assert rung(10, 0.5, 0.0) == 2  # all at once: the same
    assert rung(10, 0.31, math.inf) == 0  # 300 ms fits 310 ms ...
    assert rung(10, 0.31, 0.2) == 2  # ... but not with rho 0.75's 162 ms of headroom
    assert rung(10, 0.5, 0.2) == 0  # 300 + 162 ms fits 500 ms
    assert rung(10, 0.40, 0.2) == 1  # not 400 ms, where the mean wait's 45 ms would have
    assert rung(2, 0.55, 0.001) == 0  # too few to say


def test_rung_times_of_a_few_replies_are_numpys_to_the_last_bit() -> None:
    """The pool's last replies (a deque of floats) are summarised in plain Python, the
    simulator's profile samples by np.quantile: one statistic, the same numbers."""
    rng = np.random.default_rng(3)
    for _ in range(2000):
        xs = rng.exponential(5.0, int(rng.integers(1, 65))).tolist()
        q = float(rng.choice([0.5, 0.9, 0.99, rng.random()]))
        assert rung_times_s(deque(xs), q, 1.5) == rung_times_s(np.array(xs), q, 1.5)


def test_service_stats_follow_the_replies_and_start_from_the_profile() -> None:
    """A (variant, threads) is judged by the profile's samples until it has `OWN_REPLIES`
    replies of its own, then by its last `RECENT`; one without samples by whatever replies it
    has, else by its expected time."""
    seeded = ServiceStats(PoolSettings(service_samples_ms={("a", 1): (100.0,) * 5}))
    assert seeded.rung_times_s("a", 1, 0.9, 2.0) == pytest.approx((0.102, 0.102))
    for _ in range(OWN_REPLIES - 1):
        seeded.record("a", 1, 150.0)
    assert seeded.rung_times_s("a", 1, 0.9, 2.0) == pytest.approx((0.102, 0.102))
    seeded.record("a", 1, 150.0)
    assert seeded.rung_times_s("a", 1, 0.9, 2.0) == pytest.approx((0.152, 0.152))
    for _ in range(RECENT):
        seeded.record("a", 1, 80.0)
    assert seeded.rung_times_s("a", 1, 0.9, 2.0) == pytest.approx((0.082, 0.082))  # last 16
    expected = ServiceStats(PoolSettings(expected_service_ms={("a", 1): 40.0}))
    assert expected.rung_times_s("a", 1, 0.9, 0.0) == pytest.approx((0.040, 0.040))
    expected.record("a", 1, 30.0)
    assert expected.rung_times_s("a", 1, 0.9, 0.0) == pytest.approx((0.030, 0.030))
    assert ServiceStats(PoolSettings(drop="expired")).rung_times_s("a", 1, 0.9, 2.0) == (0, 0)


def test_a_rung_with_few_replies_is_judged_at_the_speed_the_host_serves_now() -> None:
    """`a` serves 1.2 x slower than profiled (median over median); `b`, with two replies of
    its own, is judged by its profile samples x 1.2, and so is `c`'s expected time. A host
    faster than profiled keeps the profile's times; a far slower one scales them by at most
    `MAX_SPEED`."""
    settings = PoolSettings(service_samples_ms={("a", 1): (40.0, 50.0, 60.0),
                                                ("b", 1): (100.0,) * 3},
                            expected_service_ms={("c", 1): 10.0})
    stats = ServiceStats(settings)
    for ms in (55.0, 60.0, 65.0) * 3:
        stats.record("a", 1, ms)
    stats.record("b", 1, 500.0)
    stats.record("b", 1, 500.0)
    assert stats.speed() == pytest.approx(1.2)
    assert stats.rung_times_s("b", 1, 0.9, 2.0) == pytest.approx((0.122, 0.122))
    assert stats.rung_times_s("c", 1, 0.9, 0.0) == pytest.approx((0.012, 0.012))
    fast = ServiceStats(settings)
    for _ in range(OWN_REPLIES):
        fast.record("a", 1, 10.0)
    assert fast.speed() == 1.0
    slow = ServiceStats(settings)
    for _ in range(OWN_REPLIES):
        slow.record("a", 1, 500.0)
    assert slow.speed() == MAX_SPEED


def test_an_upgrade_its_samples_cannot_resolve_is_closed() -> None:
    """The largest of n samples is below the true q-quantile with probability q ** n: an
    upgrade is open only when that is at most one half (0.9 wants 7 samples, 0.983 wants
    41), the variant in force and its fallbacks are never closed, and the input is left as
    it was."""
    assert resolves(0.9, 7) and not resolves(0.9, 6) and not resolves(0.9, 0)
    assert resolves(0.983, 41) and not resolves(0.983, 25)
    safe = np.array([0.05, 0.04, 0.01, 0.005])
    out = close_unresolved_upgrades(safe, (0.983, 0.95, 0.9, 0.9), (25, 20, 3, 2), base=2)
    assert list(out) == [math.inf, 0.04, 0.01, 0.005] and safe[0] == 0.05
    assert close_unresolved_upgrades(safe, (0.983, 0.95, 0.9, 0.9), (0, 0, 0, 0), 0) is safe


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
    assert pool._choose(job, 1, now=0.010) == (light, "fallback", "")
    route(pool, Decision(heavy, A1))
    assert pool._choose(job, 1, now=0.010)[2].startswith("deadline cannot be met")


def test_a_new_overhead_moves_the_rule(tiny_spec: PoolSpec) -> None:
    """`set_overhead_ms` (a calibrated profile's overhead, taken at a controller switch): a
    request its median service time would just bring in is dropped once the path is known
    to cost more; the replies already recorded are kept."""
    variant = tiny_spec.variants[0].name
    pool = ReplicaPool(tiny_spec, PoolSettings(service_samples_ms={(variant, 1): (40.0,) * 5}))
    route(pool, Decision(variant, A1))
    job = _Job(0, None, {}, asyncio.get_event_loop_policy().new_event_loop().create_future(),
               enqueued_s=0.0, expires_s=0.060)
    assert pool._choose(job, 1, now=0.010) == (variant, "in_force", "")  # 40 ms fits the 50 left
    pool.set_overhead_ms(15.0)
    assert pool._choose(job, 1, now=0.010)[2].startswith("deadline cannot be met")
    with pytest.raises(ValueError, match="overhead_ms"):
        pool.set_overhead_ms(-1.0)


def test_a_path_bound_entry_is_judged_by_its_path_cost_at_the_pool_offered_rate(
        tiny_spec: PoolSpec) -> None:
    """With a path-bound entry in force the rule counts the path's cost at the requests the
    pool took in the last second (`PathOverhead`), not one overhead for every load: a request
    that waited 2 ms with 8 ms left is served while the pool is quiet (the path costs 2 ms
    there), dropped after 900 requests in a second (20 ms), served again once they have aged
    out; another variant in force is judged by the settings' overhead (9 ms: dropped)."""
    path_bound, other = (v.name for v in tiny_spec.variants[:2])
    curve = PathOverhead(load_per_rps=0.001, utilization=(0.1, 0.9), median_ms=(2.0, 20.0))
    pool = ReplicaPool(tiny_spec, PoolSettings(
        service_samples_ms={(v, 1): (2.0,) * 5 for v in (path_bound, other)}, overhead_ms=9.0,
        path_overhead={(path_bound, 1): curve}))
    route(pool, Decision(path_bound, A1))
    futures = asyncio.get_event_loop_policy().new_event_loop()

    def job(at_s: float) -> _Job:
        return _Job(0, None, {}, futures.create_future(), enqueued_s=at_s,
                    expires_s=at_s + 0.010)

    assert pool._choose(job(0.0), 1, now=0.002) == (path_bound, "in_force", "")
    for t in np.linspace(-0.899, 0.0, 900).tolist():
        pool._offered.record(t)
    assert pool._choose(job(0.0), 1, now=0.002)[2].startswith("deadline cannot be met")
    assert pool._choose(job(1.5), 1, now=1.502) == (path_bound, "in_force", "")  # the 900 aged out
    route(pool, Decision(other, A1))
    assert pool._choose(job(1.5), 1, now=1.502)[2].startswith("deadline cannot be met")


# --- whole runs: the kernel against the live pool's own dispatch ---------------------------


class _FakeHandle:
    """A replica without a process: `call` hands the request to the test's event driver."""

    def __init__(self, worker_id: int, calls: list[tuple[Replica[_Job], int, str]],
                 roster: Roster[_Job]) -> None:
        self.worker_id, self.pid = worker_id, None
        self.slot = Slot(1, (worker_id,))
        self._calls, self._roster = calls, roster

    def call(self, request_id: int, variant: str, inputs: object) -> bool:
        r = self._roster.of(self)  # type: ignore[arg-type]
        assert r is not None
        self._calls.append((r, request_id, variant))
        return True


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def pool_run(spec: PoolSpec, drop: DropRule, replicas: int, ladder: tuple[str, ...],
             base: int, samples: dict[str, list[float]], arrival_s: np.ndarray,
             deadline_s: np.ndarray, service_s: np.ndarray) -> list[int]:
    """Each request's outcome in the real `ReplicaPool` (its queue, `_pump`, `_choose`, reply
    handling), on a manual clock, with replicas that answer after `service_s[i, rung]`:
    the rung that served request i, or -1 if it was dropped."""
    clock = _Clock()
    pool = ReplicaPool(spec, PoolSettings(
        drop=drop, service_samples_ms={(v, 1): tuple(s) for v, s in samples.items()},
        overhead_ms=OVERHEAD_MS, sweep_period_s=1e9, max_queue=10_000), clock)
    pool._stats.record = lambda *_: None  # type: ignore[method-assign]
    calls: list[tuple[Replica[_Job], int, str]] = []
    x = {"input": np.zeros((1, *spec.input.shape), np.float32)}

    async def main() -> list[int]:
        for k in range(replicas):
            r = pool._roster.add(_FakeHandle(k, calls, pool._roster),  # type: ignore[arg-type]
                                 asyncio.get_running_loop().create_future())
            pool._roster.idle(r)
        pool._life.allocation = Allocation(replicas, 1)
        await pool.apply(decision_of(ladder, base, pool._life.allocation))
        done: list[tuple[float, int, Replica[_Job], int]] = []  # (end, seq, replica, request)

        def schedule() -> None:
            while calls:
                r, rid, variant = calls.pop(0)
                end = clock.now + float(service_s[rid, ladder.index(variant)])
                heapq.heappush(done, (end, rid, r, rid))

        def complete_until(t: float) -> None:
            while done and done[0][0] <= t:
                end, _, r, rid = heapq.heappop(done)
                clock.now = end
                pool._on_reply(r, InferReply(rid, service_ms=1.0))
                schedule()

        tasks = []
        for a, d in zip(arrival_s.tolist(), deadline_s.tolist(), strict=True):
            complete_until(a)
            clock.now = a
            tasks.append(asyncio.create_task(pool.infer(x, deadline_s=d)))
            await asyncio.sleep(0)  # enqueued (and dispatched if a replica is idle) at `a`
            schedule()
        complete_until(math.inf)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        pool._sweeper.cancel()  # type: ignore[union-attr]
        return [-1 if isinstance(o, DeadlineExceeded) else ladder.index(o.variant)
                for o in outcomes]  # type: ignore[union-attr]

    return asyncio.run(main())


def kernel_run(spec: PoolSpec, drop: DropRule, replicas: int, ladder: tuple[str, ...],
               base: int, samples: dict[str, list[float]], arrival_s: np.ndarray,
               deadline_s: np.ndarray, service_s: np.ndarray) -> list[int]:
    """The same run through the simulator's kernel, its rung times and offered rates built as
    `sim.engine` builds them; each outcome as the index of its variant in `ladder`."""
    accuracy = {v.name: v.accuracy.value for v in spec.variants}
    rungs, at = dispatch_ladder(ladder[base], ladder[base + 1:], drop == "hopeless",
                                upgrades=ladder[:base])
    columns = [ladder.index(v) for v in rungs]
    safe = slack = None
    if drop == "hopeless":
        quantiles = safe_quantiles([accuracy[v] for v in rungs])
        times = [rung_times_s(samples[v], q, OVERHEAD_MS)
                 for v, q in zip(rungs, quantiles, strict=True)]
        safe, slack = (np.array(t) for t in zip(*times, strict=True))
        safe = close_unresolved_upgrades(safe, quantiles, [len(samples[v]) for v in rungs], at)
    res = run_fcfs(arrival_s, service_s[:, columns], replicas,
                   None if drop == "never" else deadline_s, math.inf, slack, safe,
                   OVERHEAD_MS / 1000.0 if drop == "hopeless" else 0.0, base=at,
                   rate_rps=upgrade_rate_rps(arrival_s))
    assert res.n_done == len(arrival_s)
    return [columns[c] if c >= 0 else -1 for c in res.choice.tolist()]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), drop=st.sampled_from(["hopeless", "expired", "never"]),
       replicas=st.integers(2, 3), rungs=st.integers(1, 3), n=st.integers(1, 40),
       deadline_ms=st.floats(5.0, 400.0), seed=st.integers(0, 2**32 - 1))
def test_a_whole_run_gets_the_same_decisions_in_the_pool_and_the_kernel(
        tiny_spec: PoolSpec, data: st.DataObject, drop: DropRule, replicas: int, rungs: int,
        n: int, deadline_ms: float, seed: int) -> None:
    """The same seeded arrivals, service times and deadlines through the simulator's kernel
    (`run_fcfs`) and through the real `ReplicaPool` (R > 1, each drop rule): every request is
    served by the same rung or dropped alike.

    Shared by both sides: the ladder (`dispatch.ladder`, upgrades included), the rung times
    (`dispatch.rung_times_s` over the same samples and `safe_quantiles`; an upgrade they do
    not resolve closed, `dispatch.close_unresolved_upgrades`), the rule
    (`dispatch.choose_rung`). The offered rate an upgrade is checked by is each side's own
    (the pool's enqueues, `sim.sampling.upgrade_rate_rps`). The pool's side is its own code:
    queue, dispatch loop, `_choose` and reply handling. Not shared, and so not tested here: the pool learns service times from
    its replies (switched off: both sides use the profile's samples), its periodic sweep of
    expired requests (disabled; it changes when a drop is answered, not whether), worker
    processes and real time (replaced by replicas that answer after the drawn service time on
    a manual clock), and the simulator's overhead draws, periods and reallocations."""
    rng = np.random.default_rng(seed)
    by_accuracy = sorted(tiny_spec.variants, key=lambda v: -v.accuracy.value)
    ladder = tuple(v.name for v in by_accuracy[:rungs])
    base = data.draw(st.integers(0, rungs - 1), label="base")  # the rungs before it: upgrades
    samples = {v: data.draw(service, label=v) for v in ladder}
    arrival_s = np.cumsum(rng.exponential(0.02, n))
    service_s = np.column_stack([rng.choice(np.array(samples[v]), n) / 1000.0 for v in ladder])
    deadline_s = arrival_s + deadline_ms / 1000.0
    args = (tiny_spec, drop, replicas, ladder, base, samples, arrival_s, deadline_s, service_s)
    assert pool_run(*args) == kernel_run(*args)
