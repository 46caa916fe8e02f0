"""Run a gearshift server: replica pool + KServe V2 app + control loop under one event loop.

The port opens at once (live); the server reports ready once every replica has loaded and
warmed every variant. On SIGINT/SIGTERM it stops accepting connections, answers what it holds
(uvicorn waits for open requests, then the pool drains its queue, each for up to the graceful
timeout), cancels an allocation change in progress (killing the replicas it was loading) and
stops the workers.

Access and limits (`ServerSettings`): bearer-token auth, the management switch and the Host
check are `serving.access`; body size and body-read time are the app's; request-head size,
header count and head-read time are `serving.http_limits`; open connections are capped by
uvicorn's `limit_concurrency` (503 beyond it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import uvicorn

from gearshift.control.factory import SWITCHING
from gearshift.dispatch import PathOverhead
from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.errors import GearshiftError, SpecError
from gearshift.planning.table import PolicyTable
from gearshift.policy import Controller, Policy
from gearshift.profiling.profile import Profile
from gearshift.serving.access import AccessMiddleware, resolve_access
from gearshift.serving.app import AppLimits, answer_on_cancel, create_app
from gearshift.serving.control_loop import ControlLoop
from gearshift.serving.dataplane import DataPlane
from gearshift.serving.http_limits import limited_protocol
from gearshift.serving.metrics import Metrics
from gearshift.types import Allocation, Decision, StatusDoc, allocations_for
from gearshift.zoo.spec import PoolSpec, model_outputs

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
    control_log_max_bytes: int = 16 << 20  # then rotated to NAME.1 (one old file kept)
    max_body_bytes: int = 64 << 20
    pool: PoolSettings = field(default_factory=PoolSettings)
    graceful_timeout_s: float = 30.0
    prewarm: tuple[Allocation, ...] = ()  # load these R x T up front so switching loads nothing
    # access (see serving.access): no token = no auth; management "auto": closed beyond
    # loopback; allowed_hosts None: loopback names when bound to loopback, else any
    auth_token: str | None = field(default=None, repr=False)
    management: Literal["auto", "open", "token", "closed"] = "auto"
    allowed_hosts: tuple[str, ...] | None = None
    # limits on what one client can hold
    body_timeout_s: float = 30.0  # to receive a whole request body
    max_header_bytes: int = 32 << 10  # request line + headers
    max_headers: int = 100
    header_timeout_s: float = 10.0  # to receive a request line and headers
    max_connections: int = 2048  # open connections (and requests); 503 beyond
    max_elements: int = 1 << 24  # per input tensor
    max_inflight_body_bytes: int = 512 << 20  # inference bodies held at once; 503 beyond

    def __post_init__(self) -> None:
        for name in ("control_log_max_bytes", "max_body_bytes", "max_header_bytes",
                     "max_headers", "max_connections", "max_elements"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServerSettings.{name} must be at least 1")
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError("ServerSettings.max_inflight_body_bytes must be at least "
                             "max_body_bytes (else a body within the limit is never served)")
        for name in ("body_timeout_s", "header_timeout_s", "graceful_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServerSettings.{name} must be positive")


def pool_settings(prof: Profile | None, max_queue: int) -> PoolSettings:
    """The pool's settings for serving under `prof`: each variant's service times (the drop
    rule and the ladder read them) and the serving path's overhead, as profiled."""
    entries = prof.entries if prof else []
    return PoolSettings(
        max_queue=max_queue,
        expected_service_ms={(e.variant, e.threads): float(np.mean(e.service_ms))
                             for e in entries},
        service_samples_ms={(e.variant, e.threads): tuple(e.service_ms) for e in entries},
        overhead_ms=prof.dispatch_overhead_ms() if prof else 0.0,
        path_overhead=path_overheads(prof) if prof else {})


def path_overheads(prof: Profile) -> dict[tuple[str, int], PathOverhead]:
    """`Profile.path_overheads` keyed as the pool keys its service times: (variant, threads)."""
    return {(v, a.threads): p for (v, a), p in prof.path_overheads().items()}


def prewarm_allocations(table: PolicyTable, controller: str, mode: str
                        ) -> tuple[Allocation, ...]:
    """The R x T `gearshift serve --prewarm MODE` loads at start: "table", those the controller
    may choose (the ranges' for table:paper and statics; for table and queue-aware, which
    choose among every candidate of the planner's grid, those too); "all"; "none"."""
    ranged = [r.decision.allocation for r in table.ranges]
    grid = sorted({Allocation(p.replicas, p.threads) for p in table.grid}, reverse=True)
    on_grid = controller in SWITCHING  # they choose among every candidate of the grid
    warm = {"table": [*ranged, *grid] if on_grid else ranged,
            "all": allocations_for(table.cores), "none": []}
    if mode not in warm:
        raise SpecError(f"--prewarm {mode!r}: use table, all or none")
    return tuple(dict.fromkeys(warm[mode]))


PolicyFactory = Callable[[str], tuple[Policy[Any], Decision]]
OverheadSource = Callable[[], tuple[float, dict[tuple[str, int], PathOverhead]] | None]
"""Reads what the dispatch rule should count of the serving path, from the profile on disk:
its mean overhead (ms) and the path-bound entries' cost by load (None: keep those in force)."""


class Server:
    def __init__(self, spec: PoolSpec, controller: Controller[Any], initial: Decision,
                 settings: ServerSettings, policies: PolicyFactory | None = None,
                 overhead: OverheadSource | None = None) -> None:
        """`policies` builds a controller by name for `PUT /gearshift/controller`; `overhead`,
        read at the same time, retunes the pool's dispatch rule (a profile calibrated through
        this server after it started measures the overhead its clients see)."""
        self.settings = settings
        self.initial = initial
        self._policies = policies
        self._overhead = overhead
        self.pool = ReplicaPool(spec, settings.pool)
        self.plane = DataPlane(self.pool, Metrics(), outputs=model_outputs(spec))
        self.loop = ControlLoop(self.plane, controller, settings.period_s, settings.control_log,
                                log_max_bytes=settings.control_log_max_bytes)
        self.ready = False
        self.start_error = ""
        self.started_s = time.perf_counter()
        self._uvicorn: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._controller_lock = asyncio.Lock()
        self.access = resolve_access(settings.host, settings.auth_token, settings.management,
                                     settings.allowed_hosts)
        limits = AppLimits(settings.max_body_bytes, settings.body_timeout_s,
                           settings.max_elements, settings.max_inflight_body_bytes)
        self.app = answer_on_cancel(AccessMiddleware(
            create_app(self.plane, self.is_ready, self.status, settings.max_body_bytes,
                       self._lifespan, self.set_controller if policies else None, limits),
            self.access))

    def is_ready(self) -> bool:
        """Started, and a replica serves (or is being brought up): not while every one is gone."""
        return self.ready and self.pool.can_serve()

    def status(self) -> StatusDoc:
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
            "fallbacks": c.fallbacks, "upgrades": c.upgrades,
            "disconnects": self.plane.disconnects,
            "policy": self.loop.controller.policy.name,
            "last_decision": asdict(last.decision) if last else None,
            "last_error": self.loop.last_error or c.last_error,
        }

    async def _start_pool(self) -> None:
        try:
            await self.pool.apply(self.initial)
            await self.pool.prewarm(list(self.settings.prewarm))
        except Exception as exc:  # no replicas: nothing to serve, so stop the server
            self.start_error = f"replicas failed to start: {exc}"
            if isinstance(exc, GearshiftError):  # says what was wrong: no traceback needed
                log.error(self.start_error)
            else:
                log.exception(self.start_error)
            if self._uvicorn is not None:
                self._uvicorn.should_exit = True
            return
        self.ready = True
        log.info("ready: %s at %s", self.initial.variant, self.initial.allocation)
        self._tasks.append(asyncio.create_task(self.loop.run()))

    async def set_controller(self, name: str) -> StatusDoc:
        """Replace the running policy by `name` and apply its starting decision (waiting for
        any allocation change to finish); returns the status afterwards.

        One change at a time (a lock). The policy is built in a worker thread (it reads the
        policy table and profile from disk). If it cannot be built or its starting decision
        names no variant of the pool, nothing changes and the error (4xx) says why. The
        observation window is kept: the next tick sees every arrival of its whole period, so
        the new policy starts from the true rate rather than from a part-period count."""
        factory = self._policies
        assert factory is not None
        async with self._controller_lock:
            try:
                policy, initial = await asyncio.to_thread(factory, name)
                if self._overhead is not None:  # the profile's, as measured: taken as it is
                    overhead = await asyncio.to_thread(self._overhead)
                    if overhead is not None:
                        self.pool.set_overhead_ms(*overhead)
            except GearshiftError:
                raise
            except Exception as exc:
                log.exception("controller %r could not be built", name)
                raise SpecError(f"controller {name!r} could not be built from the policy files "
                                f"({type(exc).__name__}); the server keeps its policy") from None
            await self.loop.stop()
            self.loop.apply(initial)  # raises (and changes nothing) for an unknown variant
            self.loop.controller = Controller(policy, keep_log=False)
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
        await self.loop.cancel()  # a change may load for minutes: it is not waited for
        await self.pool.close(drain=True, drain_timeout_s=self.settings.graceful_timeout_s)

    async def serve(self) -> None:
        st = self.settings
        config = uvicorn.Config(
            self.app, host=st.host, port=st.port, log_level="warning",
            lifespan="on", timeout_graceful_shutdown=st.graceful_timeout_s,  # type: ignore[arg-type]
            access_log=False, limit_concurrency=st.max_connections,
            http=limited_protocol(st.max_header_bytes, st.max_headers, st.header_timeout_s),
        )
        self._uvicorn = _Uvicorn(config)
        await self._uvicorn.serve()
