"""The replica pool: R worker processes x T threads, every variant pre-loaded in each, one FCFS queue.

`apply(allocation, variant)` is the actuator. A variant switch is a routing change: the next
request dispatched runs the new variant. An allocation change brings up replicas for the new
R x T (reusing any already-loaded replica on the same cores), then retires the old ones; queued
requests are served by whichever replicas are ready, and a retiring replica finishes its current
request first, so nothing in flight is lost. A new replica whose cores a retiring one still
computes on waits for it to finish (as in the simulator): both at once would oversubscribe those
cores and slow both (three requests on two cores took ~320 ms where one takes ~120). With
`keep_warm`, retired replicas stay loaded and parked, so returning to an allocation seen before
takes no load time.

Every request handed to `infer` gets exactly one outcome: a result or a `GearshiftError`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gearshift.cores import Slot, assign_slots
from gearshift.dispatch import choose_rung
from gearshift.engine.messages import (
    InferReply,
    InputShape,
    Message,
    WorkerConfig,
    WorkerReady,
    WorkerStartFailed,
)
from gearshift.engine.pool_types import InferResult, PoolCounters, PoolSettings, validate_inputs
from gearshift.engine.service_stats import ServiceStats
from gearshift.engine.workers import WorkerHandle, WorkerState
from gearshift.errors import (
    BadRequest,
    DeadlineExceeded,
    GearshiftError,
    ModelNotFound,
    Overloaded,
    ShuttingDown,
    WorkerFailed,
)
from gearshift.runtime.base import RuntimeSettings
from gearshift.types import Allocation, PoolStatus, safe_quantiles
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
        self._cores = list(settings.cores or sorted(os.sched_getaffinity(0)))
        self._models = {v.name: str(spec.model_path(v.name)) for v in spec.variants}
        self._variant = spec.variants[0].name
        self._accuracy = {v.name: v.accuracy.value for v in spec.variants}
        self._fallbacks: tuple[str, ...] = ()
        self._quantiles = safe_quantiles([self._accuracy[self._variant]])  # per ladder entry
        self._allocation: Allocation | None = None
        self._workers: dict[int, WorkerHandle] = {}
        self._active: set[int] = set()
        self._idle: list[WorkerHandle] = []
        self._inflight: dict[int, _Job] = {}
        self._ready: dict[int, asyncio.Future[None]] = {}
        self._queue: deque[_Job] = deque()
        self._ids = itertools.count()
        self._worker_ids = itertools.count()
        self._alloc_lock = asyncio.Lock()
        self._drained = asyncio.Event()
        self._closing = False
        self._restarts_in_a_row = 0
        self._stats = ServiceStats(settings)
        self.counters = PoolCounters()

    # ----- public API -------------------------------------------------------------------------

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def allocation(self) -> Allocation | None:
        return self._allocation

    async def start(self, allocation: Allocation, variant: str | None = None) -> None:
        await self.apply(allocation, variant)

    async def apply(self, allocation: Allocation | None = None, variant: str | None = None,
                    fallbacks: tuple[str, ...] = ()) -> None:
        """Switch variant (with its `fallbacks`, as `switch_variant`) at once; change R x T once
        the new replicas are loaded."""
        if variant is not None:
            self.switch_variant(variant, fallbacks)
        if allocation is not None and allocation != self._allocation:
            async with self._alloc_lock:
                if allocation != self._allocation:
                    await self._reallocate(allocation)

    def switch_variant(self, variant: str, fallbacks: tuple[str, ...] = ()) -> None:
        """Serve `variant` from now on. `fallbacks`: lighter variants, in order, that answer a
        request (sent to the application, not to a variant by name) which `variant` would
        answer too late under the drop rule, instead of dropping it."""
        for name in (variant, *fallbacks):
            if name not in self._models:
                raise ModelNotFound(f"no variant {name!r}; the pool has {', '.join(self._models)}")
        self._fallbacks = tuple(fallbacks)
        self._quantiles = safe_quantiles([self._accuracy[v] for v in (variant, *fallbacks)])
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
        if self._closing:
            raise ShuttingDown("the server is shutting down and takes no new requests")
        if variant is not None and variant not in self._models:
            raise ModelNotFound(f"no variant {variant!r}; the pool has {', '.join(self._models)}")
        validate_inputs(self.spec, inputs)
        if self._allocation is not None and not self._active and not self._alloc_lock.locked():
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
        self._queue.append(job)
        self._drained.clear()
        self._pump()
        return await job.future

    def status(self) -> PoolStatus:
        c = self.counters
        return PoolStatus(
            variant=self._variant,
            allocation=self._allocation or Allocation(1, 1),
            workers_ready=sum(1 for i in self._active if self._workers[i].state in _SERVING),
            queue_length=len(self._queue),
            in_flight=len(self._inflight),
            switches=c.switches,
            allocation_changes=c.allocation_changes,
            worker_restarts=c.worker_restarts,
            extra={"service_ms_ewma": c.service_ms_ewma, "parked": float(len(self._parked()))},
        )

    def worker_pids(self) -> dict[int, int]:
        """Active replicas' process ids by worker id."""
        return {i: self._workers[i].pid or 0 for i in sorted(self._active)}

    def worker_memory(self) -> dict[int, int]:
        """Resident bytes each active replica reported once loaded."""
        return {i: self._workers[i].rss_bytes for i in sorted(self._active)}

    async def close(self, drain: bool = True, drain_timeout_s: float = 60.0) -> None:
        """Stop taking requests; answer (drain) or fail what is queued; stop every worker."""
        self._closing = True
        if drain and (self._queue or self._inflight) and self._active:
            try:
                await asyncio.wait_for(self._drained.wait(), drain_timeout_s)
            except TimeoutError:
                pass  # what is left is answered with ShuttingDown below
        while self._queue:
            self._fail(self._queue.popleft(), ShuttingDown("the server shut down before serving"))
        workers = list(self._workers.values())
        for w in workers:
            if w.state in (WorkerState.IDLE, WorkerState.PARKED, WorkerState.WAITING):
                w.stop()
            elif w.state is not WorkerState.STOPPING:
                w.kill()
        await asyncio.gather(*(w.join() for w in workers))
        for job in list(self._inflight.values()):
            self._fail(job, ShuttingDown("the server shut down while serving"))
        self._inflight.clear()

    async def __aenter__(self) -> ReplicaPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(drain=exc[0] is None)

    # ----- dispatch ---------------------------------------------------------------------------

    def _pump(self) -> None:
        while self._queue and self._idle:
            job = self._queue.popleft()
            if job.future.done():  # the caller gave up
                continue
            now = self._clock()
            w = self._idle[-1]
            variant, hopeless = self._choose(job, w.slot.threads, now)
            if hopeless:
                self.counters.expired += 1
                self._fail(job, DeadlineExceeded(hopeless))
                continue
            self._idle.pop()
            job.dispatched_s, job.served_by = now, variant
            if not w.call(job.request_id, job.served_by, job.inputs):
                self._queue.appendleft(job)  # never reached the worker: serve it elsewhere
                self._drained.clear()
                continue
            w.state = WorkerState.BUSY
            self._inflight[w.worker_id] = job
        self._check_drained()

    def _choose(self, job: _Job, threads: int, now: float) -> tuple[str, str]:
        """(variant to serve `job` with, why it cannot be served in time: '' if it can), by
        `gearshift.dispatch` as the simulator decides. The ladder: the variant a request names,
        else the variant in force and, under the "hopeless" rule, its fallbacks."""
        ladder = ((job.variant,) if job.variant else
                  (self._variant, *self._fallbacks) if self.settings.drop == "hopeless"
                  else (self._variant,))
        if job.expires_s is None or self.settings.drop == "never":
            return ladder[0], ""
        quantiles = (self._quantiles if ladder == (self._variant, *self._fallbacks)
                     else safe_quantiles([self._accuracy[v] for v in ladder]))
        times = [self._stats.rung_times_s(v, threads, q)
                 for v, q in zip(ladder, quantiles, strict=True)]
        safe, slack = (np.array(t) for t in zip(*times, strict=True))
        waited_s, left_s = now - job.enqueued_s, job.expires_s - now
        rung = choose_rung.py_func(waited_s, left_s, safe, slack)
        if rung < 0:
            if left_s < 0:
                return ladder[0], (f"deadline passed after {waited_s * 1000:.0f} ms queued; "
                                   "not served")
            return ladder[0], (f"deadline cannot be met: {waited_s * 1000:.0f} ms queued, "
                               f"{left_s * 1000:.0f} ms left, {ladder[-1]} takes "
                               f"~{slack[-1] * 1000:.0f} ms; not served")
        if rung > 0:
            self.counters.fallbacks += 1
        return ladder[rung], ""

    def _check_drained(self) -> None:
        if not self._queue and not self._inflight:
            self._drained.set()

    def _on_message(self, w: WorkerHandle, msg: Message) -> None:
        if isinstance(msg, InferReply):
            self._on_reply(w, msg)
        elif isinstance(msg, WorkerReady):
            w.rss_bytes, w.load_ms, w.pid = msg.rss_bytes, msg.load_ms, msg.pid
            w.mapped()
            _resolve(self._ready.pop(w.worker_id, None), None)
        elif isinstance(msg, WorkerStartFailed):
            err = WorkerFailed(f"replica {msg.worker_id} failed to start: {msg.error}")
            self.counters.last_error = err.message
            _resolve(self._ready.pop(w.worker_id, None), err)

    def _on_reply(self, w: WorkerHandle, reply: InferReply) -> None:
        job = self._inflight.pop(w.worker_id, None)
        if job is None:  # answered already (the pool closed after a drain timeout)
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
            key = (job.served_by, w.slot.threads)
            self._stats.record(*key, reply.service_ms)
            queue_ms = (job.dispatched_s - job.enqueued_s) * 1000.0
            job.future.set_result(
                InferResult(reply.outputs, job.served_by, queue_ms, reply.service_ms, w.worker_id)
            )
        self._restarts_in_a_row = 0
        if w.state is WorkerState.RETIRING:
            self._retire(w)
            self._release_waiting()
        else:
            self._make_idle(w)
        self._pump()

    def _on_exit(self, w: WorkerHandle) -> None:
        self._workers.pop(w.worker_id, None)
        if w in self._idle:
            self._idle.remove(w)
        exit_err = WorkerFailed(f"replica {w.worker_id} (pid {w.pid}) exited unexpectedly")
        _resolve(self._ready.pop(w.worker_id, None), exit_err)
        job = self._inflight.pop(w.worker_id, None)
        if job is not None:
            self.counters.failed += 1
            self._fail(job, ShuttingDown("the server shut down while serving") if self._closing
                       else WorkerFailed(f"replica {w.worker_id} (pid {w.pid}) died while serving "
                                         "this request; it is being replaced, retry the request"))
        asyncio.get_running_loop().create_task(w.join())
        if w.worker_id in self._active:
            self._active.discard(w.worker_id)
            if not self._closing:
                asyncio.get_running_loop().create_task(self._replace(w.slot))
        elif not self._closing:  # a retiring replica died: those waiting for its cores may go
            self._release_waiting()
            self._pump()
        self._check_drained()

    def _fail(self, job: _Job, err: GearshiftError) -> None:
        if not job.future.done():
            job.future.set_exception(err)

    def _drain_estimate_s(self) -> float:
        replicas = max(1, len(self._active))
        est = len(self._queue) * self.counters.service_ms_ewma / 1000.0 / replicas
        return max(1.0, round(est, 1))

    # ----- allocation changes -----------------------------------------------------------------

    def _parked(self) -> list[WorkerHandle]:
        return [w for w in self._workers.values() if w.state is WorkerState.PARKED]

    def _reusable(self) -> list[WorkerHandle]:
        """Loaded replicas that can serve a new allocation: active, parked, or still finishing."""
        spare = (WorkerState.PARKED, WorkerState.RETIRING)
        active = [self._workers[i] for i in sorted(self._active)]
        return active + [w for w in self._workers.values() if w.state in spare and w not in active]

    def _spawn(self, slot: Slot) -> tuple[WorkerHandle, asyncio.Future[None]]:
        inp = self.spec.input
        settings = RuntimeSettings(threads=slot.threads, spinning=self.settings.spinning)
        config = WorkerConfig(
            next(self._worker_ids), slot.cores, self._models, settings,
            InputShape(inp.name, tuple(inp.shape), inp.dtype),
        )
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready[config.worker_id] = ready
        item_bytes = int(np.prod(inp.shape)) * np.dtype(inp.dtype).itemsize
        slot_bytes = item_bytes * self.settings.slot_items if self.settings.transport == "shm" else 0
        w = WorkerHandle(config, self._on_message, self._on_exit, slot_bytes)
        self._workers[w.worker_id] = w
        return w, ready

    async def _bring_up(self, slots: list[Slot]) -> list[WorkerHandle]:
        """Start workers for `slots` and wait until all are loaded; kill them all on failure."""
        started = [self._spawn(s) for s in slots]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(f for _, f in started)), self.settings.start_timeout_s
            )
        except (GearshiftError, TimeoutError) as exc:
            for w, _ in started:
                w.kill()
            if isinstance(exc, TimeoutError):
                raise WorkerFailed(
                    f"replicas did not load within {self.settings.start_timeout_s:.0f} s"
                ) from None
            raise
        return [w for w, _ in started]

    def _match(self, allocation: Allocation) -> tuple[list[WorkerHandle], list[Slot]]:
        """Loaded replicas that already fit `allocation`'s slots, and the slots none fits."""
        keep: list[WorkerHandle] = []
        missing: list[Slot] = []
        candidates = self._reusable()
        for slot in assign_slots(allocation.replicas, allocation.threads, self._cores):
            match = next((w for w in candidates if w.slot == slot and w not in keep), None)
            if match is None:
                missing.append(slot)
            else:
                keep.append(match)
        return keep, missing

    async def prewarm(self, allocations: list[Allocation]) -> None:
        """Load and park replicas for `allocations` now, so switching to them later loads
        nothing (needs `keep_warm`). Costs one replica's memory per extra slot."""
        if not self.settings.keep_warm:
            return
        async with self._alloc_lock:
            for alloc in allocations:
                _, missing = self._match(alloc)
                for w in await self._bring_up(missing):
                    w.state = WorkerState.PARKED

    async def _reallocate(self, allocation: Allocation) -> None:
        keep, missing = self._match(allocation)
        new = await self._bring_up(missing)
        keep = [w for w in keep if w.worker_id in self._workers]  # one may have died meanwhile
        old = [self._workers[i] for i in self._active if self._workers[i] not in keep]
        self._active = {w.worker_id for w in keep + new}
        for w in keep + new:
            if w.worker_id in self._inflight:  # kept while finishing a call: it serves on
                _busy(w)
        for w in old:
            if w.state in (WorkerState.IDLE, WorkerState.WAITING):
                if w in self._idle:
                    self._idle.remove(w)
                self._retire(w)
            elif w.state is WorkerState.BUSY:
                w.state = WorkerState.RETIRING
        for w in keep + new:
            if w.state in (WorkerState.STARTING, WorkerState.PARKED, WorkerState.RETIRING,
                           WorkerState.WAITING):
                self._admit(w)
        if self._allocation is not None:
            self.counters.allocation_changes += 1
        self._allocation = allocation
        self._pump()

    def _admit(self, w: WorkerHandle) -> None:
        """Make a replica of the allocation idle, or WAITING while a retiring replica (of this
        change or an earlier one) still computes on any of its cores."""
        if any(o is not w and o.state is WorkerState.RETIRING and _share_cores(w, o)
               for o in self._workers.values()):
            w.state = WorkerState.WAITING
        else:
            self._make_idle(w)

    def _release_waiting(self) -> None:
        """`_admit` again every waiting replica of the allocation (a retiring one finished)."""
        for i in sorted(self._active):
            w = self._workers.get(i)
            if w is not None and w.state is WorkerState.WAITING:
                self._admit(w)

    def _make_idle(self, w: WorkerHandle) -> None:
        w.state = WorkerState.IDLE
        if w not in self._idle:
            self._idle.append(w)

    def _retire(self, w: WorkerHandle) -> None:
        if self.settings.keep_warm and not self._closing:
            w.state = WorkerState.PARKED
        else:
            w.stop()

    async def _replace(self, slot: Slot) -> None:
        """Bring up a replacement for a replica that died, on the same cores."""
        self._restarts_in_a_row += 1
        if self._restarts_in_a_row > self.settings.max_restarts:
            self.counters.last_error = "replicas keep dying; not replacing any more"
            self._fail_queue_if_no_replicas()
            return
        self.counters.worker_restarts += 1
        try:
            async with self._alloc_lock:
                if self._closing or self._allocation is None:
                    return
                _, missing = self._match(self._allocation)
                if slot not in missing:  # covered already (the allocation changed meanwhile)
                    return
                (w,) = await self._bring_up([slot])
                self._active.add(w.worker_id)
                self._make_idle(w)
        except GearshiftError as exc:
            self.counters.last_error = exc.message
            self._fail_queue_if_no_replicas()
            return
        self._pump()

    def _fail_queue_if_no_replicas(self) -> None:
        """With no replica serving or coming up, nothing queued would ever be answered."""
        alive = any(self._workers[i].state in (*_SERVING, WorkerState.STARTING,
                                               WorkerState.WAITING)
                    for i in self._active if i in self._workers)
        if alive or self._alloc_lock.locked():
            return
        err = WorkerFailed(f"no replica is running ({self.counters.last_error}); "
                           "the server cannot serve until it is restarted")
        while self._queue:
            self._fail(self._queue.popleft(), err)
        self._check_drained()


_SERVING = (WorkerState.IDLE, WorkerState.BUSY)


def _share_cores(a: WorkerHandle, b: WorkerHandle) -> bool:
    return bool(set(a.slot.cores) & set(b.slot.cores))


def _busy(w: WorkerHandle) -> None:
    w.state = WorkerState.BUSY


def _resolve(fut: asyncio.Future[None] | None, err: GearshiftError | None) -> None:
    if fut is None or fut.done():
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
