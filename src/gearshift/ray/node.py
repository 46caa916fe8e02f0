"""One node of a cluster: its replica pool, the window of what it served, and its share of the
control loop (report the period, apply the decision the cluster's controller sends back).

No Ray here: the deployment in `gearshift.ray.app` holds a `PoolNode` and passes it the call
that reaches the controller. A request comes with the time it has left (node clocks are not the
ingress's); an error the pool raises goes back as a `NodeError` value the ingress raises again
as the same error, so the client gets the status and message `gearshift serve` would give.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from gearshift.cluster import NodeReport
from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.engine.pool_types import InferResult
from gearshift.errors import GearshiftError
from gearshift.policy import arrival_parts, service_times
from gearshift.serving.actuator import Actuator
from gearshift.serving.dataplane import Window
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import PoolSpec

log = logging.getLogger("gearshift.ray.node")

Report = Callable[[NodeReport], Awaitable[Decision | None]]


@dataclass(frozen=True)
class NodeError:
    """A `GearshiftError` raised on a node, as a value that crosses process boundaries."""

    kind: str
    message: str
    retry_after_s: float | None = None


class PoolNode:
    def __init__(self, node_id: str, spec: PoolSpec, settings: PoolSettings, initial: Decision,
                 prewarm: tuple[Allocation, ...], period_s: float, report: Report,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.node_id = node_id
        self.pool = ReplicaPool(spec, settings)
        self.actuator = Actuator(self.pool)
        self.initial = initial
        self.prewarm = prewarm
        self.period_s = period_s
        self._report = report
        self._clock = clock
        self.window = Window()
        self.started = False
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the starting decision and the pre-warmed R x T, then report every period."""
        await self.pool.apply(self.initial)
        await self.pool.prewarm(list(self.prewarm))
        self.started = True
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def infer(self, inputs: dict[str, np.ndarray], pinned: str | None, budget_s: float
                    ) -> InferResult | NodeError:
        t0 = self._clock()
        self.window.arrived(t0)
        try:
            result = await self.pool.infer(inputs, pinned, t0 + budget_s)
        except GearshiftError as exc:
            self.window.failed(exc)
            return NodeError(type(exc).__name__, str(exc), getattr(exc, "retry_after_s", None))
        latency_ms = (self._clock() - t0) * 1000.0
        self.window.answered(latency_ms, latency_ms <= budget_s * 1000.0, result.variant,
                             result.threads, result.service_ms)
        return result

    def healthy(self) -> bool:
        """Started, and a replica serves (or is being brought up)."""
        return self.started and self.pool.can_serve()

    def take_report(self, now_s: float) -> NodeReport:
        w, self.window = self.window, Window()
        st = self.pool.status()
        c = self.pool.counters
        return NodeReport(
            node=self.node_id, period_s=self.period_s, arrivals=w.arrivals,
            arrival_parts=arrival_parts(w.arrival_s, now_s, self.period_s),
            queue_length=st.queue_length, in_flight=st.in_flight, completed=w.completed,
            missed=w.missed, latency_p99_ms=w.p99_ms(), current=Decision(st.variant, st.allocation),
            pid=os.getpid(), workers_ready=st.workers_ready, served=c.served, failed=c.failed,
            expired=c.expired, rejected=c.rejected,
            service=service_times(w.service))

    async def _run(self) -> None:
        due = self._clock()
        while True:
            due += self.period_s
            await asyncio.sleep(max(0.0, due - self._clock()))
            try:
                decision = await self._report(self.take_report(self._clock()))
                if decision is not None:
                    self.actuator.apply(decision)
            except Exception as exc:  # noqa: BLE001 - a lost controller must not stop serving
                self.last_error = f"report failed: {type(exc).__name__}: {exc}"
                log.warning(self.last_error)

    async def close(self, drain_timeout_s: float) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.actuator.cancel()
        await self.pool.close(drain=True, drain_timeout_s=drain_timeout_s)
