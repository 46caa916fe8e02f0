"""Run a gearshift server: replica pool + KServe V2 app + control loop under one event loop.

The port opens at once (live); the server reports ready once every replica has loaded and
warmed every variant. On SIGINT/SIGTERM it stops accepting connections, answers what it holds
(uvicorn waits for open requests, then the pool drains its queue), and stops the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.policy import Controller, Policy
from gearshift.serving.app import create_app
from gearshift.serving.control_loop import ControlLoop
from gearshift.serving.dataplane import DataPlane
from gearshift.serving.metrics import Metrics
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import PoolSpec

log = logging.getLogger("gearshift.server")


class _Uvicorn(uvicorn.Server):
    """uvicorn, except that a SIGINT/SIGTERM that led to a graceful stop ends with status 0
    (uvicorn re-raises the signal after shutting down); a second SIGINT still forces exit."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    period_s: float = 0.5
    control_log: Path | None = None
    max_body_bytes: int = 64 << 20
    pool: PoolSettings = PoolSettings()
    graceful_timeout_s: float = 30.0
    prewarm: tuple[Allocation, ...] = ()  # load these R x T up front so switching loads nothing


PolicyFactory = Callable[[str], tuple[Policy[Any], Decision]]


class Server:
    def __init__(self, spec: PoolSpec, controller: Controller[Any], initial: Decision,
                 settings: ServerSettings, policies: PolicyFactory | None = None) -> None:
        """`policies` builds a controller by name for `PUT /gearshift/controller`."""
        self.settings = settings
        self.initial = initial
        self._policies = policies
        self.pool = ReplicaPool(spec, settings.pool)
        self.plane = DataPlane(self.pool, Metrics())
        self.loop = ControlLoop(self.plane, controller, settings.period_s, settings.control_log)
        self.ready = False
        self.start_error = ""
        self.started_s = time.perf_counter()
        self._uvicorn: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.app = create_app(self.plane, lambda: self.ready, self.status,
                              settings.max_body_bytes, self._lifespan,
                              self.set_controller if policies else None)

    def status(self) -> dict[str, Any]:
        st = self.pool.status()
        c = self.pool.counters
        last = self.loop.controller.last
        return {
            "ready": self.ready, "uptime_s": round(time.perf_counter() - self.started_s, 3),
            "application": self.pool.spec.application, "variant": st.variant,
            "replicas": st.allocation.replicas, "threads": st.allocation.threads,
            "workers_ready": st.workers_ready,
            "queue_length": st.queue_length, "in_flight": st.in_flight,
            "rate_rps": self.loop.last_rate_rps, "switches": st.switches,
            "allocation_changes": st.allocation_changes, "worker_restarts": st.worker_restarts,
            "served": c.served, "failed": c.failed, "expired": c.expired, "rejected": c.rejected,
            "fallbacks": c.fallbacks,
            "policy": self.loop.controller.policy.name,
            "last_decision": asdict(last.decision) if last else None,
            "last_error": self.loop.last_error or c.last_error,
        }

    async def _start_pool(self) -> None:
        try:
            await self.pool.start(self.initial.allocation, self.initial.variant)
            await self.pool.prewarm(list(self.settings.prewarm))
        except Exception as exc:  # no replicas: nothing to serve, so stop the server
            self.start_error = f"replicas failed to start: {exc}"
            log.error(self.start_error)
            if self._uvicorn is not None:
                self._uvicorn.should_exit = True
            return
        self.ready = True
        log.info("ready: %s at %s", self.initial.variant, self.initial.allocation)
        self._tasks.append(asyncio.create_task(self.loop.run()))

    async def set_controller(self, name: str) -> dict[str, Any]:
        """Replace the running policy by `name` and apply its starting decision (waiting for
        any allocation change to finish); returns the status afterwards."""
        assert self._policies is not None
        policy, initial = self._policies(name)
        self.loop.controller = Controller(policy, keep_log=False)
        self.plane.take_window()  # the new policy's first observation starts now
        await self.loop.stop()
        self.loop.apply(initial)
        await self.loop.stop()
        return self.status()

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Any) -> AsyncIterator[None]:
        self._tasks.append(asyncio.create_task(self._start_pool()))
        yield
        self.ready = False
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.loop.stop()
        await self.pool.close(drain=True)

    async def serve(self) -> None:
        config = uvicorn.Config(
            self.app, host=self.settings.host, port=self.settings.port, log_level="warning",
            lifespan="on", timeout_graceful_shutdown=int(self.settings.graceful_timeout_s),
            access_log=False,
        )
        self._uvicorn = _Uvicorn(config)
        await self._uvicorn.serve()
