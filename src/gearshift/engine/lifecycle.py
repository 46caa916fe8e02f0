"""The replicas' lifecycle: start, load, change R x T, park, retire, replace.

`Lifecycle` owns every process the pool runs and the allocation in force; it moves replicas
between states only through the `Roster`. It knows nothing of requests: it tells the pool, by
the callbacks of `LifecycleEvents`, when replicas became available (`changed`) or when none is
left and none is coming (`starved`), and forwards every worker message and exit to it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from gearshift.cores import Slot, assign_slots, sharing_cores
from gearshift.engine.messages import InputShape, Message, WorkerConfig
from gearshift.engine.pool_types import PoolCounters, PoolSettings
from gearshift.engine.roster import Replica, Roster, WorkerState
from gearshift.engine.workers import WorkerHandle
from gearshift.errors import GearshiftError, WorkerFailed
from gearshift.runtime.base import RuntimeSettings
from gearshift.types import Allocation
from gearshift.zoo.spec import PoolSpec

J = TypeVar("J")


@dataclass(frozen=True)
class LifecycleEvents:
    on_message: Callable[[WorkerHandle, Message], None]
    on_exit: Callable[[WorkerHandle], None]
    changed: Callable[[], None]  # replicas became available: dispatch what is queued
    starved: Callable[[], None]  # no replica serves and none is coming


class Lifecycle(Generic[J]):
    def __init__(self, spec: PoolSpec, settings: PoolSettings, cores: list[int],
                 roster: Roster[J], counters: PoolCounters, events: LifecycleEvents) -> None:
        self.spec = spec
        self.settings = settings
        self.roster = roster
        self.counters = counters
        self.allocation: Allocation | None = None
        self.closing = False
        self._cores = cores
        self._events = events
        self.models = {v.name: spec.model_file(v.name)  # the variants the pool has
                       for v in spec.variants}
        self._worker_ids = itertools.count()
        self._lock = asyncio.Lock()
        self._restarts_in_a_row = 0

    @property
    def changing(self) -> bool:
        """An allocation change (or a replacement) is in progress."""
        return self._lock.locked()

    def can_serve(self) -> bool:
        """A replica serves the allocation, or one is being brought up."""
        return bool(self.roster.allocated() or self.changing
                    or self.roster.in_state(WorkerState.STARTING))

    def served(self) -> None:
        """A replica answered a request: it is healthy, so replacements start counting anew."""
        self._restarts_in_a_row = 0

    async def apply(self, allocation: Allocation) -> None:
        """Bring the pool to `allocation` (no-op if it is in force), one change at a time."""
        if allocation == self.allocation:
            return
        async with self._lock:
            if allocation != self.allocation:
                await self._reallocate(allocation)

    async def prewarm(self, allocations: list[Allocation]) -> None:
        """Load and park replicas for `allocations` now, so switching to them later loads
        nothing (needs `keep_warm`). Costs one replica's memory per extra slot."""
        if not self.settings.keep_warm:
            return
        async with self._lock:
            for alloc in allocations:
                _, missing = self._match(alloc)
                for r in await self.bring_up(missing):
                    if self._alive(r):
                        self.roster.park(r)

    def parked(self) -> list[Replica[J]]:
        return self.roster.in_state(WorkerState.PARKED)

    def finished(self, r: Replica[J]) -> None:
        """A replica answered its call: idle again, or retired if it was retiring."""
        if r.state is WorkerState.RETIRING:
            self._retire(r)
            self._release_waiting()
        elif r.state is WorkerState.BUSY:
            self.roster.idle(r)

    def exited(self, r: Replica[J], was_allocated: bool) -> None:
        """A replica's process ended (the roster has forgotten it already)."""
        if was_allocated and not self.closing:
            self.replace_soon(r.handle.slot)
        elif not self.closing:  # a retiring replica died: those waiting for its cores may go
            self._release_waiting()
            self._events.changed()

    def replace_soon(self, slot: Slot) -> None:
        asyncio.get_running_loop().create_task(self._replace(slot))

    # ----- starting replicas ------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> Replica[J]:
        inp = self.spec.input
        settings = RuntimeSettings(threads=slot.threads, spinning=self.settings.spinning)
        config = WorkerConfig(
            next(self._worker_ids), slot.cores, self.models, settings,
            InputShape(inp.name, tuple(inp.shape), inp.dtype),
        )
        item_bytes = int(np.prod(inp.shape)) * np.dtype(inp.dtype).itemsize
        slot_bytes = item_bytes * self.settings.slot_items if self.settings.transport == "shm" else 0
        handle = WorkerHandle(config, self._events.on_message, self._events.on_exit, slot_bytes)
        return self.roster.add(handle, asyncio.get_running_loop().create_future())

    async def bring_up(self, slots: list[Slot]) -> list[Replica[J]]:
        """Start replicas for `slots` and wait until all are loaded; kill them all on failure
        (any failure: a worker's error, a timeout, a process that could not be started)."""
        started: list[Replica[J]] = []
        waiting: asyncio.Future[list[None]] | None = None
        try:
            for s in slots:
                started.append(self._spawn(s))
            waiting = asyncio.gather(*(r.ready for r in started))
            await asyncio.wait_for(waiting, self.settings.start_timeout_s)
        except BaseException as exc:
            for r in started:
                self.roster.kill(r)
            # nobody reads these again: the replicas' outcomes, and the wait's when it was
            # cancelled from outside (a shutdown); mark each as seen once it ends
            unread: list[asyncio.Future[Any]] = [r.ready for r in started]
            if waiting is not None:
                unread.append(waiting)
            for future in unread:
                future.add_done_callback(_observe)
            if isinstance(exc, TimeoutError):
                raise WorkerFailed(
                    f"replicas did not load within {self.settings.start_timeout_s:.0f} s"
                ) from None
            if isinstance(exc, Exception) and not isinstance(exc, GearshiftError):
                raise WorkerFailed(f"replicas could not be started: {type(exc).__name__}: "
                                   f"{exc}") from exc
            raise
        return started

    # ----- allocation changes -----------------------------------------------------------------

    def _reusable(self) -> list[Replica[J]]:
        """Loaded replicas that can serve a new allocation: allocated, parked, or finishing."""
        return self.roster.allocated() + self.roster.in_state(WorkerState.PARKED,
                                                              WorkerState.RETIRING)

    def _match(self, allocation: Allocation) -> tuple[list[Replica[J]], list[Slot]]:
        """Loaded replicas that already fit `allocation`'s slots, and the slots none fits."""
        keep: list[Replica[J]] = []
        missing: list[Slot] = []
        candidates = self._reusable()
        for slot in assign_slots(allocation.replicas, allocation.threads, self._cores):
            match = next((r for r in candidates if r.handle.slot == slot and r not in keep), None)
            if match is None:
                missing.append(slot)
            else:
                keep.append(match)
        return keep, missing

    def _alive(self, r: Replica[J]) -> bool:
        return self.roster.get(r.worker_id) is r and r.state is not WorkerState.STOPPING

    async def _reallocate(self, allocation: Allocation) -> None:
        keep, missing = self._match(allocation)
        new = await self.bring_up(missing)
        # Any of them may have died meanwhile (even right after loading): serve with the rest
        # and replace the dead once this change is done.
        chosen = [r for r in keep + new if self._alive(r)]
        lost = [r.handle.slot for r in keep + new if not self._alive(r)]
        old = [r for r in self.roster.allocated() if r not in chosen]
        for r in old:
            if r.state in (WorkerState.IDLE, WorkerState.WAITING):
                self._retire(r)
            elif r.state is WorkerState.BUSY:
                self.roster.retire_when_done(r)
        for r in chosen:
            if r.state is WorkerState.RETIRING:  # kept while finishing a call: it serves on
                self.roster.keep_computing(r)
            elif r.state in (WorkerState.STARTING, WorkerState.PARKED, WorkerState.WAITING):
                self._admit(r)
        if self.allocation is not None:
            self.counters.allocation_changes += 1
        self.allocation = allocation
        for slot in lost:
            self.replace_soon(slot)
        self._events.changed()

    def _admit(self, r: Replica[J]) -> None:
        """Make a replica of the allocation idle, or WAITING while a retiring replica (of this
        change or an earlier one) still computes on any of its cores."""
        retiring = [o.handle.slot for o in self.roster.in_state(WorkerState.RETIRING)
                    if o is not r]
        if sharing_cores(r.handle.slot, retiring):
            self.roster.wait(r)
        else:
            self.roster.idle(r)

    def _release_waiting(self) -> None:
        """`_admit` again every waiting replica of the allocation (a retiring one finished)."""
        for r in sorted(self.roster.in_state(WorkerState.WAITING), key=lambda r: r.worker_id):
            self._admit(r)

    def _retire(self, r: Replica[J]) -> None:
        if self.settings.keep_warm and not self.closing:
            self.roster.park(r)
        else:
            self.roster.stop(r)

    async def _replace(self, slot: Slot) -> None:
        """Bring up a replacement for a replica that died, on the same cores."""
        self._restarts_in_a_row += 1
        if self._restarts_in_a_row > self.settings.max_restarts:
            self.counters.last_error = "replicas keep dying; not replacing any more"
            self._events.starved()
            return
        self.counters.worker_restarts += 1
        try:
            async with self._lock:
                if self.closing or self.allocation is None:
                    return
                _, missing = self._match(self.allocation)
                if slot not in missing:  # covered already (the allocation changed meanwhile)
                    return
                (r,) = await self.bring_up([slot])
                if self._alive(r):
                    self._admit(r)
                else:  # it died as soon as it loaded: try again
                    self.replace_soon(slot)
        except GearshiftError as exc:
            self.counters.last_error = exc.message
            self._events.starved()
            return
        self._events.changed()


def _observe(future: asyncio.Future[Any]) -> None:
    """Mark a finished future's outcome as seen: its error is the caller's, raised already."""
    if not future.cancelled():
        future.exception()
