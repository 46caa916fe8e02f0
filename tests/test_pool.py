"""The replica pool with real worker processes and real tiny ONNX models."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from gearshift.engine.pool import InferResult, PoolSettings, ReplicaPool
from gearshift.engine.service_stats import OWN_REPLIES
from gearshift.errors import BadRequest, DeadlineExceeded, ModelNotFound, Overloaded, WorkerFailed
from gearshift.types import Allocation, Decision, DropRule
from gearshift.zoo.spec import PoolSpec, parse_pool_spec
from tests.reference import mlp_reference

pytestmark = pytest.mark.slow


def route(pool: ReplicaPool, variant: str, fallbacks: tuple[str, ...] = ()) -> None:
    """Switch the variant (and fallbacks) the pool serves, keeping its allocation."""
    assert pool.allocation is not None
    pool.apply(Decision(variant, pool.allocation, fallbacks=fallbacks))


def run_pool(
    spec: PoolSpec,
    body: Callable[[ReplicaPool], Awaitable[None]],
    allocation: Allocation = Allocation(2, 1),
    settings: PoolSettings = PoolSettings(),
    clock: Callable[[], float] | None = None,
) -> None:
    async def main() -> None:
        pool = ReplicaPool(spec, settings, clock) if clock else ReplicaPool(spec, settings)
        try:
            await pool.apply(Decision(pool.variant, allocation))
            await body(pool)
        finally:
            await pool.close()

    asyncio.run(asyncio.wait_for(main(), 120))


def _x(seed: int, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, 8, 8)).astype(np.float32)


def _check(spec: PoolSpec, x: np.ndarray, r: InferResult) -> None:
    want = mlp_reference(spec.model_path(r.variant), x)
    np.testing.assert_allclose(r.outputs["logits"], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("allocation", [Allocation(2, 1), Allocation(1, 2)])
@pytest.mark.parametrize("transport", ["shm", "pipe"])
def test_every_variant_served_correctly(tiny_spec, allocation: Allocation, transport) -> None:
    async def body(pool: ReplicaPool) -> None:
        assert pool.status().workers_ready == allocation.replicas
        for i, name in enumerate(tiny_spec.variant_names()):
            for batch in (1, 8, 9):  # 9 items exceed the slot: sent inline
                x = _x(i, batch)
                r = await pool.infer({"input": x}, variant=name)
                assert r.variant == name
                assert r.service_ms > 0 and r.queue_ms >= 0
                _check(tiny_spec, x, r)

    run_pool(tiny_spec, body, allocation, PoolSettings(transport=transport))


def test_a_bf16_variant_is_served_beside_its_fp32_file(tiny_spec) -> None:
    """A variant that names engine openvino at bf16 runs in the same workers as the ONNX
    Runtime ones, on the same file: its answers are the fp32 ones to bf16's precision."""
    data = tiny_spec.model_dump(mode="json", exclude={"root"})
    bf16 = {**data["variants"][2], "name": "tiny-l-bf16", "engine": "openvino",
            "precision": "bf16"}
    spec = parse_pool_spec({**data, "variants": [*data["variants"], bf16]}, tiny_spec.root)

    async def body(pool: ReplicaPool) -> None:
        x = _x(7, 4)
        fp32 = await pool.infer({"input": x}, variant="tiny-l")
        r = await pool.infer({"input": x}, variant="tiny-l-bf16")
        assert r.variant == "tiny-l-bf16" and r.service_ms > 0
        want = fp32.outputs["logits"]
        assert np.max(np.abs(r.outputs["logits"] - want)) <= 0.03 * np.max(np.abs(want))
        with pytest.raises(BadRequest, match=r"must have shape \[batch, 1, 8, 8\]"):
            await pool.infer({"input": np.zeros((1, 3, 8, 8), np.float32)},
                             variant="tiny-l-bf16")

    run_pool(spec, body, Allocation(2, 1))


def test_workers_are_pinned_to_their_cores(tiny_spec) -> None:
    cores = sorted(os.sched_getaffinity(0))

    async def body(pool: ReplicaPool) -> None:
        # slots are unlinked once mapped: nothing is left in /dev/shm however processes end
        assert not list(Path("/dev/shm").glob(f"gearshift-{os.getpid()}-*"))
        pinned = [os.sched_getaffinity(pid) for pid in pool.worker_pids().values()]
        assert len(pinned) == 2
        assert all(len(p) == 1 for p in pinned)
        if len(cores) >= 2:
            assert pinned[0] != pinned[1]

    run_pool(tiny_spec, body)


def test_variant_switch_under_concurrent_requests(tiny_spec) -> None:
    names = tiny_spec.variant_names()

    async def body(pool: ReplicaPool) -> None:
        async def switcher() -> None:
            for k in range(60):
                route(pool, names[k % len(names)])
                await asyncio.sleep(0.002)

        inputs = [_x(i) for i in range(600)]
        task = asyncio.create_task(switcher())
        results = await asyncio.gather(*(pool.infer({"input": x}) for x in inputs))
        await task
        assert len(results) == len(inputs)
        assert {r.variant for r in results} == set(names)  # the switches took effect
        for x, r in zip(inputs, results, strict=True):
            _check(tiny_spec, x, r)  # each answer came from the variant it names
        assert pool.status().switches >= 59

    run_pool(tiny_spec, body)


def test_allocation_change_under_load_answers_every_request_once(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        outcomes: list[object] = []

        async def one(i: int) -> None:
            try:
                outcomes.append(await pool.infer({"input": _x(i)}, variant="tiny-l"))
            except Exception as exc:  # noqa: BLE001 - the test counts every outcome
                outcomes.append(exc)

        async def load() -> None:  # bounded: 1500 requests over ~1.5 s
            tasks = []
            for i in range(1500):
                tasks.append(asyncio.create_task(one(i)))
                if i % 10 == 0:
                    await asyncio.sleep(0.01)
            await asyncio.gather(*tasks)

        load_task = asyncio.create_task(load())
        await asyncio.sleep(0.2)
        await pool.apply(Decision(pool.variant, Allocation(1, 2)))
        assert pool.allocation == Allocation(1, 2)
        assert len(pool.worker_pids()) == 1  # the 1x2 replica (waiting for the 2x1 ones' calls)
        await asyncio.sleep(0.3)
        assert pool.status().workers_ready == 1
        await pool.apply(Decision(pool.variant, Allocation(2, 1)))
        await load_task
        assert len(outcomes) == 1500
        errors = [o for o in outcomes if not isinstance(o, InferResult)]
        assert errors == []
        assert pool.counters.served == 1500
        assert pool.status().allocation_changes == 2
        worker_ids = {o.worker_id for o in outcomes if isinstance(o, InferResult)}
        assert len(worker_ids) >= 3  # the 1x2 replica served too

    run_pool(tiny_spec, body)


def test_returning_to_a_parked_allocation_loads_nothing(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        first = set(pool.worker_pids().values())
        load = [asyncio.create_task(pool.infer({"input": _x(i)}, "tiny-l")) for i in range(400)]
        await asyncio.sleep(0)
        await pool.apply(Decision(pool.variant, Allocation(1, 2)))
        await pool.apply(Decision(pool.variant, Allocation(2, 1)))  # old replicas may still be finishing: reused anyway
        assert set(pool.worker_pids().values()) == first
        assert all(isinstance(r, InferResult) for r in await asyncio.gather(*load))
        assert pool.status().extra["parked"] == 1  # the 1x2 replica stays loaded

    run_pool(tiny_spec, body)


def test_worker_death_answers_held_request_with_error_and_replaces(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        big = _x(0, batch=60000)  # long enough to be killed mid-request
        victim = pool.worker_pids()
        task = asyncio.create_task(pool.infer({"input": big}, variant="tiny-l"))
        while pool.status().in_flight == 0:
            await asyncio.sleep(0.001)
        busy = [r.worker_id for r in pool._roster if r.job is not None]
        os.kill(victim[busy[0]], signal.SIGKILL)
        with pytest.raises(WorkerFailed, match="died while serving"):
            await task
        for _ in range(200):  # the replacement loads in well under 20 s
            if pool.status().workers_ready == 2:
                break
            await asyncio.sleep(0.1)
        assert pool.status().workers_ready == 2
        assert pool.status().worker_restarts == 1
        assert victim[busy[0]] not in pool.worker_pids().values()
        r = await pool.infer({"input": _x(1)})
        _check(tiny_spec, _x(1), r)

    run_pool(tiny_spec, body)


def test_bad_requests_get_clear_errors(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        with pytest.raises(BadRequest, match=r"shape \[batch, 1, 8, 8\], got \[1, 8, 8\]"):
            await pool.infer({"input": np.zeros((1, 8, 8), np.float32)})
        with pytest.raises(BadRequest, match="must be float32, got float64"):
            await pool.infer({"input": np.zeros((1, 1, 8, 8))})
        with pytest.raises(BadRequest, match="missing input 'input'"):
            await pool.infer({"x": np.zeros((1, 1, 8, 8), np.float32)})
        with pytest.raises(ModelNotFound, match="no variant 'tiny-xl'"):
            await pool.infer({"input": _x(0)}, variant="tiny-xl")
        with pytest.raises(ModelNotFound):
            route(pool, "tiny-xl")

    run_pool(tiny_spec, body)


def test_full_queue_and_expired_deadline(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        big = _x(0, batch=20000)
        blockers = [asyncio.create_task(pool.infer({"input": big}, "tiny-l")) for _ in range(1)]
        await asyncio.sleep(0.05)
        late = asyncio.create_task(pool.infer({"input": _x(1)}, deadline_s=pool._clock()))
        queued = [asyncio.create_task(pool.infer({"input": _x(2)})) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="queue full") as exc:
            await pool.infer({"input": _x(3)})
        assert exc.value.retry_after_s >= 1.0
        with pytest.raises(DeadlineExceeded, match="deadline passed"):
            await late
        assert all(isinstance(r, InferResult) for r in await asyncio.gather(*blockers, *queued))

    run_pool(tiny_spec, body, Allocation(1, 2), PoolSettings(max_queue=3))


def test_close_drains_queued_requests(tiny_spec) -> None:
    async def main() -> None:
        pool = ReplicaPool(tiny_spec)
        await pool.apply(Decision(pool.variant, Allocation(1, 1)))
        tasks = [asyncio.create_task(pool.infer({"input": _x(i)})) for i in range(50)]
        await asyncio.sleep(0)
        await pool.close(drain=True)
        assert all(isinstance(t.result(), InferResult) for t in tasks)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_prewarm_parks_replicas_so_a_later_change_loads_nothing(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        await pool.prewarm([Allocation(2, 1), Allocation(1, 2)])
        assert pool.status().extra["parked"] == 1
        parked_pid = {w.pid for w in pool._parked()}
        await pool.apply(Decision(pool.variant, Allocation(1, 2)))
        assert set(pool.worker_pids().values()) == parked_pid
        r = await pool.infer({"input": _x(0)})
        _check(tiny_spec, _x(0), r)

    run_pool(tiny_spec, body)


async def _computing_on_1x2(pool: ReplicaPool) -> tuple[asyncio.Task, float]:
    """2x1 replicas parked (a change to them loads nothing), and a ~0.5 s tiny-l request in
    service on the pool's 1x2 replica (long enough to outlast the change on a busy machine);
    returns it and when it was sent (perf_counter)."""
    big = _x(0, batch=50000)
    await pool.prewarm([Allocation(2, 1)])
    for _ in range(2):
        await pool.infer({"input": big}, "tiny-l")  # warm
    sent = time.perf_counter()
    blocker = asyncio.create_task(pool.infer({"input": big}, "tiny-l"))
    await asyncio.sleep(0.005)  # dispatched to the 1x2 replica
    return blocker, sent


def test_new_replicas_wait_for_a_retiring_one_on_their_cores(tiny_spec) -> None:
    """1x2 -> 2x1 while the 1x2 replica computes: the 2x1 replicas share its cores, so they
    take nothing until it is done (three computations on two cores would slow all three)."""

    async def body(pool: ReplicaPool) -> None:
        blocker, t0 = await _computing_on_1x2(pool)
        await pool.apply(Decision(pool.variant, Allocation(2, 1)))
        t1 = time.perf_counter()
        after = [asyncio.create_task(pool.infer({"input": _x(i)})) for i in (1, 2)]
        first = await blocker
        blocker_end = t0 + (first.queue_ms + first.service_ms) / 1000.0
        assert blocker_end > t1 + 0.005, "the blocker must still be computing at the change"
        for task in after:
            r = await task
            assert t1 + r.queue_ms / 1000.0 >= blocker_end - 0.003  # started once it was done
            assert r.worker_id != first.worker_id

    run_pool(tiny_spec, body, Allocation(1, 2))


def test_a_change_back_parks_the_replicas_that_were_waiting(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        blocker, _ = await _computing_on_1x2(pool)
        await pool.apply(Decision(pool.variant, Allocation(2, 1)))  # the 2x1 replicas wait for the 1x2 one...
        await pool.apply(Decision(pool.variant, Allocation(1, 2)))  # ... which is back in the allocation before done
        assert pool.status().extra["parked"] == 2 and len(pool.worker_pids()) == 1
        first = await blocker
        again = await pool.infer({"input": _x(1)})
        assert again.worker_id == first.worker_id
        await pool.apply(Decision(pool.variant, Allocation(2, 1)))  # and the parked ones still serve when asked
        assert {(await pool.infer({"input": _x(2)})).worker_id} != {first.worker_id}

    run_pool(tiny_spec, body, Allocation(1, 2))


class ManualClock:
    """The pool's clock, set by the test: what is "late" no longer depends on machine noise."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _manual(drop: DropRule) -> PoolSettings:
    """Settings for a pool on a `ManualClock`: the clock jumps while a call is in service, so
    the watchdog (which reads the same clock) must not take that for a wedged replica."""
    return PoolSettings(drop=drop, call_timeout_s=math.inf)


async def _queue_behind_blocker(pool: ReplicaPool, clock: ManualClock, variant: str | None,
                                left_s: float) -> tuple[asyncio.Task, asyncio.Task]:
    """A slow request in service and one queued behind it whose deadline, once the replica
    frees up, leaves `left_s` seconds (on the manual clock)."""
    big = _x(0, batch=20000)
    for _ in range(3):  # the pool learns how long tiny-l takes (real replies)
        await pool.infer({"input": big}, "tiny-l")
    clock.now = 0.0
    blocker = asyncio.create_task(pool.infer({"input": big}))
    await asyncio.sleep(0)
    call = asyncio.create_task(pool.infer({"input": big}, variant, deadline_s=100.0))
    await asyncio.sleep(0)
    clock.now = 100.0 - left_s  # it has waited long: the blocker answers "now"
    return blocker, call


@pytest.mark.parametrize("drop", ["hopeless", "expired"])
def test_a_request_that_cannot_make_its_deadline_is_not_served(tiny_spec, drop) -> None:
    clock = ManualClock()

    async def body(pool: ReplicaPool) -> None:
        route(pool, "tiny-l")
        # 1 ms left, tiny-l takes far longer
        blocker, call = await _queue_behind_blocker(pool, clock, "tiny-l", 0.001)
        if drop == "hopeless":
            with pytest.raises(DeadlineExceeded, match="deadline cannot be met.*tiny-l takes"):
                await call
        else:  # only requests already past their deadline are dropped: this one is served
            assert isinstance(await call, InferResult)
        assert isinstance(await blocker, InferResult)

    run_pool(tiny_spec, body, Allocation(1, 2), _manual(drop), clock)


def test_a_request_too_late_for_the_variant_in_force_is_answered_by_a_fallback(
        tiny_spec) -> None:
    clock = ManualClock()

    async def body(pool: ReplicaPool) -> None:
        route(pool, "tiny-l", ("tiny-m", "tiny-s"))
        # tiny-l would overrun; tiny-m (no estimate yet, so assumed quick) is the most
        # accurate fallback
        blocker, late = await _queue_behind_blocker(pool, clock, None, 0.001)
        answer = await late
        assert (answer.variant, answer.served_as) == ("tiny-m", "fallback")
        answer = await blocker
        assert (answer.variant, answer.served_as) == ("tiny-l", "in_force")
        assert pool.counters.fallbacks == 1
        blocker, named = await _queue_behind_blocker(pool, clock, "tiny-l", 0.001)
        with pytest.raises(DeadlineExceeded):  # asked for tiny-l by name: no fallback
            await named
        await blocker
        with pytest.raises(ModelNotFound):
            route(pool, "tiny-l", ("tiny-xl",))

    run_pool(tiny_spec, body, Allocation(1, 2), _manual("hopeless"), clock)


def test_a_request_that_finds_a_replica_free_is_upgraded_when_its_deadline_allows(
        tiny_spec) -> None:
    """tiny-s in force with tiny-l and tiny-m as its upgrades, the pool's estimates of them
    seeded at 40 and 10 ms: a request with 30 ms to go is served by tiny-m (tiny-l's 40 ms
    would not fit), one with a second to go by tiny-l, one that names tiny-s by tiny-s, each
    answer saying what its variant was to the decision in force; the counter counts the
    upgrades, and an upgrade the pool lacks is refused."""
    settings = PoolSettings(drop="hopeless", overhead_ms=1.0, service_samples_ms={
        ("tiny-l", 1): (40.0,) * 8, ("tiny-m", 1): (10.0,) * 8, ("tiny-s", 1): (1.0,) * 8})

    async def body(pool: ReplicaPool) -> None:
        assert pool.allocation is not None
        await pool.apply(Decision("tiny-s", pool.allocation, upgrades=("tiny-l", "tiny-m")))

        async def served_by(left_s: float, variant: str | None = None) -> tuple[str, str]:
            deadline_s = time.perf_counter() + left_s
            answer = await pool.infer({"input": _x(1)}, variant, deadline_s)
            return answer.variant, answer.served_as

        assert await served_by(0.03) == ("tiny-m", "upgrade")
        assert await served_by(1.0) == ("tiny-l", "upgrade")
        assert await served_by(1.0, "tiny-s") == ("tiny-s", "named")
        assert pool.counters.upgrades == 2 and pool.counters.fallbacks == 0
        with pytest.raises(ModelNotFound):
            await pool.apply(Decision("tiny-s", pool.allocation, upgrades=("tiny-xl",)))

    run_pool(tiny_spec, body, Allocation(2, 1), settings)


def test_an_upgrade_is_judged_at_the_speed_the_host_serves_now(tiny_spec) -> None:
    """tiny-s in force with tiny-l as its upgrade, tiny-l profiled at 20 ms: a request with 35
    ms to go is upgraded while the host is taken as profiled. Once tiny-s has served
    `OWN_REPLIES` requests far slower than its profile (seeded at 1 us), the host is read as
    `MAX_SPEED` x slower, tiny-l's 20 ms as 40, and the same request is served by tiny-s."""
    settings = PoolSettings(drop="hopeless", overhead_ms=1.0, service_samples_ms={
        ("tiny-l", 1): (20.0,) * 8, ("tiny-s", 1): (0.001,) * 8})

    async def body(pool: ReplicaPool) -> None:
        assert pool.allocation is not None
        await pool.apply(Decision("tiny-s", pool.allocation, upgrades=("tiny-l",)))

        async def served(left_s: float, variant: str | None = None) -> tuple[str, str]:
            answer = await pool.infer({"input": _x(1)}, variant, time.perf_counter() + left_s)
            return answer.variant, answer.served_as

        assert await served(0.035) == ("tiny-l", "upgrade")
        for _ in range(OWN_REPLIES):
            await served(1.0, "tiny-s")
        await asyncio.sleep(1.1)  # the offered rate back to one request: only the time decides
        assert await served(0.035) == ("tiny-s", "in_force")

    run_pool(tiny_spec, body, Allocation(2, 1), settings)


def test_a_wrong_service_estimate_does_not_lock_a_variant_out(tiny_spec) -> None:
    """Seeded with a wildly slow estimate, the first request (finding a replica free) is still
    served, its real time replaces the estimate, and the queued ones are served too."""
    async def body(pool: ReplicaPool) -> None:
        x = _x(0, batch=2000)
        deadline = pool._clock() + 20.0
        results = await asyncio.gather(*(pool.infer({"input": x}, "tiny-l", deadline_s=deadline)
                                         for _ in range(10)))
        assert all(isinstance(r, InferResult) for r in results)

    settings = PoolSettings(expected_service_ms={("tiny-l", 2): 60_000.0})
    run_pool(tiny_spec, body, Allocation(1, 2), settings)


def test_with_no_replica_left_queued_requests_are_failed(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        big = _x(0, batch=20000)
        held = asyncio.create_task(pool.infer({"input": big}, "tiny-l"))
        queued = asyncio.create_task(pool.infer({"input": big}, "tiny-l"))
        while pool.status().in_flight == 0:
            await asyncio.sleep(0.001)
        os.kill(next(iter(pool.worker_pids().values())), signal.SIGKILL)
        with pytest.raises(WorkerFailed, match="died while serving"):
            await held
        with pytest.raises(WorkerFailed, match="no replica is running"):
            await asyncio.wait_for(queued, 10)
        with pytest.raises(WorkerFailed, match="no replica is running"):
            await pool.infer({"input": _x(1)})

    run_pool(tiny_spec, body, Allocation(1, 2), PoolSettings(max_restarts=0))


def test_a_replica_dying_during_an_allocation_change_is_replaced(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        kept = next(iter(pool.worker_pids().values()))
        change = pool.apply(Decision(pool.variant, Allocation(2, 1)))
        await asyncio.sleep(0.05)  # the new replica is loading
        os.kill(kept, signal.SIGKILL)
        await change
        for _ in range(200):
            st = pool.status()  # must not fail on the dead replica
            if st.workers_ready == 2:
                break
            await asyncio.sleep(0.05)
        assert pool.status().workers_ready == 2
        assert kept not in pool.worker_pids().values()
        assert len(pool.worker_pids()) == 2
        r = await pool.infer({"input": _x(1)})
        _check(tiny_spec, _x(1), r)

    run_pool(tiny_spec, body, Allocation(1, 1))


@pytest.mark.parametrize("host", ["socket-timeout", "uvloop"])
def test_answers_are_read_whole_on_any_host_loop(tiny_spec, host: str) -> None:
    """A host process that set `socket.setdefaulttimeout` makes new sockets non-blocking, and
    uvloop (libuv) makes a watched fd non-blocking; Ray Serve's replicas do both. An answer
    read half-way then met EAGAIN and its replica was taken for dead (live on a Ray node: 9
    replicas "died while serving" in 20 s)."""
    import socket

    import uvloop

    async def main() -> None:
        pool = ReplicaPool(tiny_spec, PoolSettings(transport="pipe"))
        try:
            await pool.apply(Decision(pool.variant, Allocation(2, 1)))
            conns = [r.handle._conn.fileno() for r in pool._roster]
            assert len(conns) == 2 and all(os.get_blocking(fd) for fd in conns)
            xs = [_x(i, 1 + i % 9) for i in range(300)]
            results = await asyncio.gather(*(pool.infer({"input": x}) for x in xs))
            for x, r in zip(xs, results, strict=True):
                _check(tiny_spec, x, r)
            assert pool.counters.failed == 0 and pool.counters.worker_restarts == 0
        finally:
            await pool.close()

    before = socket.getdefaulttimeout()
    if host == "socket-timeout":
        socket.setdefaulttimeout(30.0)
    try:
        runner = uvloop.run if host == "uvloop" else asyncio.run
        runner(asyncio.wait_for(main(), 120))
    finally:
        socket.setdefaulttimeout(before)
