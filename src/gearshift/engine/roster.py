"""The pool's replicas and the one record of each one's state.

Every replica the pool has started is here with its `WorkerState`, the request it is computing
(if any) and the future its loading resolves. The state is written only by the transition
methods below, so "which replicas serve the allocation", "which are idle", "what is in flight"
are all read from one place:

    STARTING --loaded--> IDLE | WAITING (in the allocation) or PARKED (not)
    IDLE --call--> BUSY --reply--> IDLE, or RETIRING --reply--> PARKED | STOPPING
    WAITING --cores free--> IDLE;  PARKED --allocation--> IDLE | WAITING
    any --exit--> removed

A replica is *allocated* (serves the current R x T) when IDLE, BUSY or WAITING.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gearshift.engine.workers import WorkerHandle

J = TypeVar("J")


class WorkerState(enum.Enum):
    STARTING = "starting"  # loading its models
    IDLE = "idle"
    BUSY = "busy"
    RETIRING = "retiring"  # finishes its current call, then parks or stops
    WAITING = "waiting"  # in the allocation, its cores still busy with a retiring replica
    PARKED = "parked"  # loaded and idle but outside the current allocation
    STOPPING = "stopping"  # told to exit (or killed); removed when its exit arrives

ALLOCATED = frozenset({WorkerState.IDLE, WorkerState.BUSY, WorkerState.WAITING})
"""States of a replica that serves the current allocation."""
COMPUTING = frozenset({WorkerState.BUSY, WorkerState.RETIRING})
"""States of a replica that holds a request."""


@dataclass(eq=False)
class Replica(Generic[J]):
    """One replica: its process handle, its state, and what it holds."""

    handle: WorkerHandle
    ready: asyncio.Future[None]
    state: WorkerState = WorkerState.STARTING
    job: J | None = None
    dispatched_s: float = 0.0  # when `job` was sent (pool clock)
    idle_seq: int = 0  # order in which replicas became idle: the latest is dispatched first
    rss_bytes: int = 0
    load_ms: float = 0.0
    pid: int = 0

    @property
    def worker_id(self) -> int:
        return self.handle.worker_id

    @property
    def allocated(self) -> bool:
        return self.state in ALLOCATED


@dataclass
class Roster(Generic[J]):
    _replicas: dict[int, Replica[J]] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    # ----- reading ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Replica[J]]:
        return iter(list(self._replicas.values()))

    def __len__(self) -> int:
        return len(self._replicas)

    def get(self, worker_id: int) -> Replica[J] | None:
        return self._replicas.get(worker_id)

    def of(self, handle: WorkerHandle) -> Replica[J] | None:
        r = self._replicas.get(handle.worker_id)
        return r if r is not None and r.handle is handle else None

    def allocated(self) -> list[Replica[J]]:
        """The replicas of the current allocation, by worker id."""
        return [r for _, r in sorted(self._replicas.items()) if r.allocated]

    def in_state(self, *states: WorkerState) -> list[Replica[J]]:
        return [r for r in self._replicas.values() if r.state in states]

    def next_idle(self) -> Replica[J] | None:
        """The idle replica that became idle last (its caches are the warmest)."""
        idle = self.in_state(WorkerState.IDLE)
        return max(idle, key=lambda r: r.idle_seq) if idle else None

    def jobs(self) -> list[J]:
        return [r.job for r in self._replicas.values() if r.job is not None]

    # ----- transitions ------------------------------------------------------------------------

    def add(self, handle: WorkerHandle, ready: asyncio.Future[None]) -> Replica[J]:
        r: Replica[J] = Replica(handle, ready, pid=handle.pid or 0)
        self._replicas[handle.worker_id] = r
        return r

    def remove(self, r: Replica[J]) -> J | None:
        """Forget a replica that exited; returns the request it held, if any."""
        self._replicas.pop(r.worker_id, None)
        job, r.job = r.job, None
        return job

    def idle(self, r: Replica[J]) -> None:
        r.state, r.idle_seq = WorkerState.IDLE, next(self._seq)

    def wait(self, r: Replica[J]) -> None:
        r.state = WorkerState.WAITING

    def park(self, r: Replica[J]) -> None:
        r.state = WorkerState.PARKED

    def retire_when_done(self, r: Replica[J]) -> None:
        r.state = WorkerState.RETIRING

    def stop(self, r: Replica[J]) -> None:
        r.state = WorkerState.STOPPING
        r.handle.stop()

    def kill(self, r: Replica[J]) -> None:
        """Kill a replica that is not to be replaced (its exit removes it)."""
        r.state = WorkerState.STOPPING
        r.handle.kill()

    def busy(self, r: Replica[J], job: J, now_s: float) -> None:
        r.state, r.job, r.dispatched_s = WorkerState.BUSY, job, now_s

    def keep_computing(self, r: Replica[J]) -> None:
        """A retiring replica taken into the allocation again while it computes."""
        r.state = WorkerState.BUSY

    def finish(self, r: Replica[J]) -> J | None:
        """The replica answered: the request it held (None if already answered)."""
        job, r.job = r.job, None
        return job
