"""The replica pool: R worker processes x T threads, every variant pre-loaded in each, one FCFS queue.

`apply(decision)` is the actuator, the one entry point for a `Decision` and the only way to
change the variant, its fallbacks or the allocation.
A variant switch is a routing change: the next request dispatched runs the new variant. An
allocation change brings up replicas for the new R x T (reusing any already-loaded replica on
the same cores), then retires the old ones; queued requests are served by whichever replicas are
ready, and a retiring replica finishes its current request first, so nothing in flight is lost.
A new replica whose cores a retiring one still computes on waits for it to finish (as in the
simulator): both at once would oversubscribe those cores and slow both (three requests on two
cores took ~320 ms where one takes ~120). With `keep_warm`, retired replicas stay loaded and
parked, so returning to an allocation seen before takes no load time.

The pool does admission and dispatch; which replica is in which state is `Roster`'s one record
(`gearshift.engine.roster`), service times are `ServiceStats`', the dispatch rule is
`gearshift.dispatch` (the simulator's too). A sweep every `sweep_period_s` answers queued
requests whose deadline passed while every replica was busy, and kills (then replaces) a replica
that has not answered within `call_timeout_s`.

Every request handed to `infer` gets exactly one outcome: a result or a `GearshiftError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Self

import numpy as np

from gearshift.dispatch import (
    PathOverhead,
    choose_rung,
    close_unresolved_upgrades,
    ladder,
    served_as,
)
from gearshift.engine.lifecycle import Lifecycle, LifecycleEvents
from gearshift.engine.messages import (
    InferReply,
    Message,
    WorkerReady,
    WorkerStartFailed,
)
from gearshift.engine.offered_rate import OfferedRate
from gearshift.engine.pool_types import InferResult, PoolCounters, PoolSettings, validate_inputs
from gearshift.engine.roster import Replica, Roster, WorkerState
from gearshift.engine.service_stats import ServiceStats
from gearshift.engine.workers import WorkerHandle
from gearshift.errors import (
    BadRequest,
    DeadlineExceeded,
    GearshiftError,
    ModelNotFound,
    Overloaded,
    ShuttingDown,
    WorkerFailed,
)
from gearshift.types import Allocation, Decision, PoolStatus, ServedAs, safe_quantiles
from gearshift.zoo.spec import PoolSpec

__all__ = ["InferResult", "PoolSettings", "ReplicaPool", "validate_inputs"]


@dataclass
class _Job:
    request_id: int
    variant: str | None  # None: whichever variant is active when dispatched
    inputs: dict[str, np.ndarray]
    future: asyncio.Future[InferResult]
    enqueued_s: float
    expires_s: float | None
    dispatched_s: float = 0.0
    served_by: str = ""
    served_as: ServedAs = ""
    offered_rps: float = 0.0  # the offered rate as it was enqueued (`OfferedRate.for_upgrades`)


_Replica = Replica[_Job]


class ReplicaPool:
    def __init__(
        self,
        spec: PoolSpec,
        settings: PoolSettings = PoolSettings(),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self._clock = clock
        self._variant = spec.variants[0].name
        self._accuracy = {v.name: v.accuracy.value for v in spec.variants}
        self._fallbacks: tuple[str, ...] = ()
        self._upgrades: tuple[str, ...] = ()
        self._quantiles = safe_quantiles([self._accuracy[self._variant]])  # per ladder entry
        self._roster: Roster[_Job] = Roster()
        self._queue: deque[_Job] = deque()
        self._offered = OfferedRate()
        self._ids = itertools.count()
        self._drained = asyncio.Event()
        self._pumping = False
        self._sweeper: asyncio.Task[None] | None = None
        self._stats = ServiceStats(settings)
        self.counters = PoolCounters()
        self._life: Lifecycle[_Job] = Lifecycle(
            spec, settings, list(settings.cores or sorted(os.sched_getaffinity(0))),
            self._roster, self.counters,
            LifecycleEvents(self._on_message, self._on_exit, self._pump,
                            self._fail_queue_if_no_replicas))

    # ----- public API -------------------------------------------------------------------------

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def allocation(self) -> Allocation | None:
        return self._life.allocation

    @property
    def fallbacks(self) -> tuple[str, ...]:
        return self._fallbacks

    def apply(self, decision: Decision) -> asyncio.Future[None]:
        """Serve `decision`: its variant, with its fallbacks, from the next request dispatched;
        its allocation once the replicas for it are loaded (one change at a time). The variant
        switch happens before this returns; the allocation change runs in the background, and
        the returned future is done when it is (await it to wait; it raises if the replicas
        could not be brought up). A decision naming a variant the pool lacks raises
        `ModelNotFound` and changes nothing. Needs a running event loop."""
        self._route(decision.variant, decision.fallbacks, decision.upgrades)
        loop = asyncio.get_running_loop()
        if self._sweeper is None and not self._life.closing:
            self._sweeper = loop.create_task(self._sweep_forever())
        if decision.allocation == self._life.allocation:
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        return loop.create_task(self._life.apply(decision.allocation))

    def set_overhead_ms(self, overhead_ms: float,
                        path: dict[tuple[str, int], PathOverhead] | None = None) -> None:
        """The serving path's mean overhead (ms) the dispatch rule counts from now on, and
        with `path` its cost by load for the path-bound (variant, threads) (a profile
        calibrated through the front end measures them after the pool has started)."""
        if not overhead_ms >= 0:
            raise ValueError(f"overhead_ms must be >= 0, got {overhead_ms}")
        self.settings = replace(self.settings, overhead_ms=float(overhead_ms),
                                path_overhead=self.settings.path_overhead if path is None
                                else dict(path))
        self._stats.retune(self.settings)

    async def prewarm(self, allocations: list[Allocation]) -> None:
        """Load and park replicas for `allocations` now, so switching to them later loads
        nothing (needs `keep_warm`). Costs one replica's memory per extra slot."""
        await self._life.prewarm(allocations)

    def _route(self, variant: str, fallbacks: tuple[str, ...],
               upgrades: tuple[str, ...] = ()) -> None:
        """Serve `variant` from now on. `fallbacks`: lighter variants, in order, that answer a
        request (sent to the application, not to a variant by name) which `variant` would
        answer too late under the drop rule, instead of dropping it; `upgrades`: more
        accurate ones that may answer a request that finds a replica free
        (`gearshift.dispatch`)."""
        for name in (*upgrades, variant, *fallbacks):
            if name not in self._life.models:
                raise ModelNotFound(f"no variant {name!r}; the pool has "
                                    f"{', '.join(self._life.models)}")
        self._fallbacks = tuple(fallbacks)
        self._upgrades = tuple(upgrades)
        self._quantiles = safe_quantiles([self._accuracy[v]
                                          for v in (*upgrades, variant, *fallbacks)])
        if variant != self._variant:
            self._variant = variant
            self.counters.switches += 1

    async def infer(
        self,
        inputs: dict[str, np.ndarray],
        variant: str | None = None,
        deadline_s: float | None = None,
    ) -> InferResult:
        """Queue one request. `deadline_s` is absolute on this pool's clock: a request that
        cannot meet it (see `PoolSettings.drop`) is answered with `DeadlineExceeded` instead of
        being served late."""
        if self._life.closing:
            raise ShuttingDown("the server is shutting down and takes no new requests")
        if variant is not None and variant not in self._life.models:
            raise ModelNotFound(f"no variant {variant!r}; the pool has "
                                f"{', '.join(self._life.models)}")
        validate_inputs(self.spec, inputs)
        if self._life.allocation is not None and not self.can_serve():
            raise WorkerFailed(f"no replica is running ({self.counters.last_error}); "
                               "the server cannot serve until it is restarted")
        if len(self._queue) >= self.settings.max_queue:
            self.counters.rejected += 1
            raise Overloaded(
                f"queue full ({len(self._queue)} requests waiting); retry later",
                retry_after_s=self._drain_estimate_s(),
            )
        job = _Job(
            next(self._ids), variant, inputs, asyncio.get_running_loop().create_future(),
            self._clock(), deadline_s,
        )
        # the offered rate: a path-bound entry's cost is read at it, an upgrade checked by it
        self._offered.record(job.enqueued_s)
        job.offered_rps = self._offered.for_upgrades(job.enqueued_s)
        self._queue.append(job)
        self._drained.clear()
        self._pump()
        return await job.future

    def can_serve(self) -> bool:
        """Whether a replica serves the allocation, or one is being brought up: False when every
        replica is gone and none is coming (readiness reports it)."""
        return self._life.can_serve()

    def status(self) -> PoolStatus:
        c = self.counters
        serving = (WorkerState.IDLE, WorkerState.BUSY)
        return PoolStatus(
            variant=self._variant,
            allocation=self._life.allocation or Allocation(1, 1),
            workers_ready=sum(1 for r in self._roster.allocated() if r.state in serving),
            queue_length=len(self._queue),
            in_flight=len(self._roster.jobs()),
            switches=c.switches,
            allocation_changes=c.allocation_changes,
            worker_restarts=c.worker_restarts,
            fallbacks=c.fallbacks,
            upgrades=c.upgrades,
            extra={"service_ms_ewma": c.service_ms_ewma, "parked": float(len(self._parked()))},
        )

    def worker_pids(self) -> dict[int, int]:
        """Allocated replicas' process ids by worker id."""
        return {r.worker_id: r.pid for r in self._roster.allocated()}

    def worker_memory(self) -> dict[int, int]:
        """Resident bytes each allocated replica reported once loaded."""
        return {r.worker_id: r.rss_bytes for r in self._roster.allocated()}

    async def close(self, drain: bool = True, drain_timeout_s: float = 60.0) -> None:
        """Stop taking requests; answer (drain) or fail what is queued; stop every worker."""
        self._life.closing = True
        if drain and (self._queue or self._roster.jobs()) and self._roster.allocated():
            with contextlib.suppress(TimeoutError):  # what is left is answered below
                await asyncio.wait_for(self._drained.wait(), drain_timeout_s)
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        while self._queue:
            self._fail(self._queue.popleft(), ShuttingDown("the server shut down before serving"))
        replicas = list(self._roster)
        for r in replicas:
            if r.state in (WorkerState.IDLE, WorkerState.PARKED, WorkerState.WAITING):
                self._roster.stop(r)
            elif r.state is not WorkerState.STOPPING:
                r.handle.kill()
        await asyncio.gather(*(r.handle.join() for r in replicas))
        for r in list(self._roster):
            job = self._roster.finish(r)
            if job is not None:
                self._fail(job, ShuttingDown("the server shut down while serving"))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(drain=exc[0] is None)

    # ----- dispatch ---------------------------------------------------------------------------

    def _pump(self) -> None:
        if self._pumping:  # a replica found gone while dispatching re-enters through its exit
            return
        self._pumping = True
        try:
            while self._queue and (r := self._roster.next_idle()) is not None:
                job = self._queue.popleft()
                if job.future.done():  # the caller gave up
                    continue
                now = self._clock()
                variant, role, hopeless = self._choose(job, r.handle.slot.threads, now)
                if hopeless:
                    self.counters.expired += 1
                    self._fail(job, DeadlineExceeded(hopeless))
                    continue
                job.dispatched_s, job.served_by, job.served_as = now, variant, role
                self._roster.busy(r, job, now)
                if not r.handle.call(job.request_id, job.served_by, job.inputs):
                    self._roster.finish(r)  # never reached the worker: serve it elsewhere
                    self._queue.appendleft(job)
                    self._drained.clear()
        finally:
            self._pumping = False
        self._check_drained()

    def _choose(self, job: _Job, threads: int, now: float) -> tuple[str, ServedAs, str]:
        """(variant to serve `job` with, what it is to the decision in force, why it cannot be
        served in time: '' if it can), by `gearshift.dispatch` as the simulator decides. The
        ladder: the variant a request names, else the variant in force and, under the
        "hopeless" rule, its upgrades before it and its fallbacks after it."""
        role: ServedAs = "named" if job.variant else "in_force"
        rungs, base = (((job.variant,), 0) if job.variant else
                       ladder(self._variant, self._fallbacks, self.settings.drop == "hopeless",
                              upgrades=self._upgrades))
        if job.expires_s is None or self.settings.drop == "never":
            return rungs[base], role, ""
        quantiles = (self._quantiles if rungs == (*self._upgrades, self._variant,
                                                  *self._fallbacks)
                     else safe_quantiles([self._accuracy[v] for v in rungs]))
        overhead_ms = self._dispatch_overhead_ms(threads, now)
        times = [self._stats.rung_times_s(v, threads, q, overhead_ms)
                 for v, q in zip(rungs, quantiles, strict=True)]
        safe, slack = (np.array(t) for t in zip(*times, strict=True))
        if base > 0:
            safe = close_unresolved_upgrades(
                safe, quantiles, [self._stats.sample_count(v, threads) for v in rungs], base)
        waited_s, left_s = now - job.enqueued_s, job.expires_s - now
        first, last = (self._queue[0], self._queue[-1]) if self._queue else (job, job)
        rung = choose_rung.py_func(
            waited_s, left_s, safe, slack, len(self._queue), _left_s(first, now),
            _left_s(last, now), max(1, len(self._roster.allocated())),
            overhead_ms / 1000.0, last.enqueued_s - job.enqueued_s, base, job.offered_rps)
        if rung < 0:
            if left_s < 0:
                return rungs[base], role, _passed(waited_s)
            return rungs[base], role, (
                f"deadline cannot be met: {waited_s * 1000:.0f} ms queued, {left_s * 1000:.0f} "
                f"ms left, {rungs[-1]} takes ~{slack[-1] * 1000:.0f} ms; not served")
        if rung != base:
            role = served_as(rung, base)
            if role == "fallback":
                self.counters.fallbacks += 1
            else:
                self.counters.upgrades += 1
        return rungs[rung], role, ""

    def _dispatch_overhead_ms(self, threads: int, now: float) -> float:
        """The path's overhead the rule counts: for a path-bound entry in force, its curve at
        the arrivals of the last `dispatch.RATE_WINDOW_S` (`PathOverhead`), else the settings'."""
        path = self.settings.path_overhead.get((self._variant, threads))
        if path is None:
            return self.settings.overhead_ms
        return path.at(self._offered.per_second(now))

    def _check_drained(self) -> None:
        if not self._queue and not self._roster.jobs():
            self._drained.set()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_period_s)
            self._sweep()

    def _sweep(self) -> None:
        """Answer queued requests whose deadline passed (or whose caller gave up) now rather than
        when a replica frees up; kill replicas that hold a call past `call_timeout_s`."""
        now = self._clock()
        if self._queue and self.settings.drop != "never":
            kept: deque[_Job] = deque()
            for job in self._queue:
                if job.future.done():
                    continue
                if job.expires_s is not None and job.expires_s < now:
                    self.counters.expired += 1
                    self._fail(job, DeadlineExceeded(_passed(now - job.enqueued_s)))
                else:
                    kept.append(job)
            self._queue = kept
        limit = self.settings.call_timeout_s
        for r in self._roster.in_state(WorkerState.BUSY, WorkerState.RETIRING):
            held = r.job
            if held is not None and now - r.dispatched_s > limit:
                self._roster.finish(r)
                self.counters.failed += 1
                self.counters.hung += 1
                msg = (f"replica {r.worker_id} (pid {r.pid}) did not answer within {limit:g} s; "
                       "it was stopped and is being replaced, retry the request")
                self.counters.last_error = msg
                self._fail(held, WorkerFailed(msg))
                self._roster.kill(r)
                if not self._life.closing:
                    self._life.replace_soon(r.handle.slot)
        self._check_drained()

    def _on_message(self, handle: WorkerHandle, msg: Message) -> None:
        r = self._roster.of(handle)
        if r is None:
            return
        if isinstance(msg, InferReply):
            self._on_reply(r, msg)
        elif isinstance(msg, WorkerReady):
            r.rss_bytes, r.load_ms, r.pid = msg.rss_bytes, msg.load_ms, msg.pid
            handle.mapped()
            _resolve(r.ready, None)
        elif isinstance(msg, WorkerStartFailed):
            err = WorkerFailed(f"replica {msg.worker_id} failed to start: {msg.error}")
            self.counters.last_error = err.message
            _resolve(r.ready, err)

    def _on_reply(self, r: _Replica, reply: InferReply) -> None:
        job = self._roster.finish(r)
        if job is None:  # answered already (it was past `call_timeout_s`, or the pool closed)
            return
        if reply.error:
            self.counters.failed += 1
            self._fail(job, _error_from(reply))
        elif not job.future.done():
            self.counters.served += 1
            c = self.counters
            c.service_ms_ewma = reply.service_ms if c.served == 1 else (
                0.9 * c.service_ms_ewma + 0.1 * reply.service_ms
            )
            self._stats.record(job.served_by, r.handle.slot.threads, reply.service_ms)
            queue_ms = (job.dispatched_s - job.enqueued_s) * 1000.0
            held_ms = (self._clock() - job.dispatched_s) * 1000.0
            job.future.set_result(
                InferResult(reply.outputs, job.served_by, queue_ms, reply.service_ms, r.worker_id,
                            r.handle.slot.threads, max(0.0, held_ms - reply.service_ms),
                            job.served_as)
            )
        self._life.served()
        self._life.finished(r)
        self._pump()

    def _on_exit(self, handle: WorkerHandle) -> None:
        r = self._roster.of(handle)
        if r is None:
            return
        allocated = r.allocated
        job = self._roster.remove(r)
        _resolve(r.ready, WorkerFailed(f"replica {r.worker_id} (pid {r.pid}) exited "
                                       "unexpectedly"))
        if job is not None:
            self.counters.failed += 1
            self._fail(job, ShuttingDown("the server shut down while serving") if self._life.closing
                       else WorkerFailed(f"replica {r.worker_id} (pid {r.pid}) died while serving "
                                         "this request; it is being replaced, retry the request"))
        asyncio.get_running_loop().create_task(handle.join())
        self._life.exited(r, allocated)
        self._check_drained()

    def _fail(self, job: _Job, err: GearshiftError) -> None:
        if not job.future.done():
            job.future.set_exception(err)

    def _drain_estimate_s(self) -> float:
        replicas = max(1, len(self._roster.allocated()))
        est = len(self._queue) * self.counters.service_ms_ewma / 1000.0 / replicas
        return max(1.0, round(est, 1))

    def _parked(self) -> list[_Replica]:
        return self._life.parked()

    def _fail_queue_if_no_replicas(self) -> None:
        """With no replica serving or coming up, nothing queued would ever be answered."""
        if self.can_serve():
            return
        err = WorkerFailed(f"no replica is running ({self.counters.last_error}); "
                           "the server cannot serve until it is restarted")
        while self._queue:
            self._fail(self._queue.popleft(), err)
        self._check_drained()


def _left_s(job: _Job, now: float) -> float:
    """Time to `job`'s deadline from `now` (s); infinite without one."""
    return math.inf if job.expires_s is None else job.expires_s - now


def _passed(waited_s: float) -> str:
    return f"deadline passed after {waited_s * 1000:.0f} ms queued; not served"


def _resolve(fut: asyncio.Future[None], err: GearshiftError | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


def _error_from(reply: InferReply) -> GearshiftError:
    if reply.error_status == 400:
        return BadRequest(reply.error)
    if reply.error_status == 404:
        return ModelNotFound(reply.error)
    return WorkerFailed(reply.error)
