"""Faults in the replica pool: wedged, dying and unstartable replicas, and requests that expire
while every replica is busy. Real worker processes serving tiny ONNX models."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time

import pytest

from gearshift.engine import workers as workers_module
from gearshift.engine.pool import InferResult, PoolSettings, ReplicaPool
from gearshift.engine.roster import WorkerState
from gearshift.errors import DeadlineExceeded, WorkerFailed
from gearshift.types import Allocation, Decision
from tests.test_pool import _check, _x, run_pool


async def _until(cond, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_a_wedged_replica_is_killed_its_request_answered_and_it_is_replaced(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        pids = pool.worker_pids()
        wedged = pids[min(pids)]
        os.kill(wedged, signal.SIGSTOP)  # alive, never answers
        try:
            calls = [asyncio.create_task(pool.infer({"input": _x(i)})) for i in range(6)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            with contextlib.suppress(ProcessLookupError):  # gone if it was killed already
                os.kill(wedged, signal.SIGCONT)
        failed = [o for o in outcomes if isinstance(o, WorkerFailed)]
        assert len(failed) == 1 and "did not answer within 0.5 s" in failed[0].message
        assert all(isinstance(o, InferResult) for o in outcomes if o not in failed)
        assert pool.counters.hung == 1
        await _until(lambda: pool.status().workers_ready == 2)
        assert wedged not in pool.worker_pids().values()
        r = await pool.infer({"input": _x(9)})
        _check(tiny_spec, _x(9), r)

    run_pool(tiny_spec, body, Allocation(2, 1), PoolSettings(call_timeout_s=0.5))


def test_queued_requests_past_their_deadline_are_answered_while_every_replica_is_busy(
        tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        (pid,) = pool.worker_pids().values()
        os.kill(pid, signal.SIGSTOP)  # the only replica holds its call for 3 s
        try:
            blocker = asyncio.create_task(pool.infer({"input": _x(0)}))
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            late = asyncio.create_task(pool.infer({"input": _x(1)},
                                                  deadline_s=time.perf_counter() + 0.2))
            with pytest.raises(DeadlineExceeded, match="deadline passed"):
                await late
            answered_after_s = time.perf_counter() - t0
            assert not blocker.done()  # answered while the replica was still busy
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        assert answered_after_s < 2.0  # the sweep, not the replica freeing up, answered it
        assert isinstance(await blocker, InferResult)
        assert pool.counters.expired == 1 and pool.status().queue_length == 0

    run_pool(tiny_spec, body, Allocation(1, 2), PoolSettings(call_timeout_s=30.0))


def test_a_replica_dying_right_after_it_loaded_during_an_allocation_change(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        original = pool._life.bring_up
        killed: list[int] = []

        async def bring_up_then_one_dies(slots):
            started = await original(slots)
            if not killed:  # the first new replica dies after WorkerReady, before it serves
                victim = started[0]
                killed.append(victim.pid)
                os.kill(victim.pid, signal.SIGKILL)
                await _until(lambda: pool._roster.get(victim.worker_id) is None)
            return started

        pool._life.bring_up = bring_up_then_one_dies  # type: ignore[method-assign]
        await pool.apply(Decision(pool.variant, Allocation(1, 2)))
        assert pool.allocation == Allocation(1, 2)
        pool.status()  # no stale replica left in the books
        await _until(lambda: pool.status().workers_ready == 1)
        assert killed[0] not in pool.worker_pids().values()
        results = await asyncio.gather(*(pool.infer({"input": _x(i)}) for i in range(4)))
        for i, r in enumerate(results):
            _check(tiny_spec, _x(i), r)
        assert all(r.state is not WorkerState.STARTING for r in pool._roster)

    run_pool(tiny_spec, body, Allocation(2, 1))


def test_with_every_replica_gone_the_pool_says_it_cannot_serve(tiny_spec) -> None:
    async def body(pool: ReplicaPool) -> None:
        assert pool.can_serve()
        for pid in pool.worker_pids().values():
            os.kill(pid, signal.SIGKILL)
        await _until(lambda: not pool.can_serve())
        with pytest.raises(WorkerFailed, match="no replica is running"):
            await pool.infer({"input": _x(0)})

    run_pool(tiny_spec, body, Allocation(2, 1), PoolSettings(max_restarts=0))


def test_a_replica_that_cannot_be_started_fails_the_change_and_leaves_nothing(
        tiny_spec, monkeypatch) -> None:
    real = workers_module.subprocess.Popen
    calls = {"n": 0}

    def popen_fails_second_time(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(24, "Too many open files")
        return real(*args, **kwargs)

    async def main() -> None:
        monkeypatch.setattr(workers_module.subprocess, "Popen", popen_fails_second_time)
        pool = ReplicaPool(tiny_spec)
        try:
            with pytest.raises(WorkerFailed, match="could not be started: OSError"):
                await pool.apply(Decision(pool.variant, Allocation(2, 1)))
            await _until(lambda: len(pool._roster) == 0)  # the first one was killed
            assert not pool.can_serve()
        finally:
            await pool.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_change_cancelled_while_its_replicas_load_leaves_no_unretrieved_error(
        tiny_spec, caplog) -> None:
    """A shutdown that cancels an allocation change mid-start logs nothing of its own: no
    'exception was never retrieved' for the wait on the replicas, and the pool still serves."""
    async def body(pool: ReplicaPool) -> None:
        change = pool.apply(Decision(pool.variant, Allocation(1, 2)))
        await _until(lambda: any(r.state is WorkerState.STARTING for r in pool._roster))
        change.cancel()
        with pytest.raises(asyncio.CancelledError):
            await change
        await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0)
        await _until(lambda: pool.status().workers_ready >= 1)
        r = await pool.infer({"input": _x(3)})
        _check(tiny_spec, _x(3), r)

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_pool(tiny_spec, body, Allocation(2, 1))
        gc.collect()
    unretrieved = [rec.getMessage() for rec in caplog.records
                   if "never retrieved" in rec.getMessage()]
    assert unretrieved == []
