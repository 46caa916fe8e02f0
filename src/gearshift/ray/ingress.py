"""The cluster's front door: `gearshift serve`'s KServe V2 app (the same routes, limits, errors,
response parameters and metric names), with a pool that sends each request to a node.

No Ray here: the deployment in `gearshift.ray.app` passes the calls that reach a node and the
controller. A node that dies with a request in hand answers it with an error (503, retry); the
router sends the next request to another node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from gearshift import errors
from gearshift.cluster import ClusterSummary
from gearshift.engine.pool_types import InferResult
from gearshift.errors import GearshiftError, Overloaded, WorkerFailed
from gearshift.ray.node import NodeError
from gearshift.serving.access import AccessMiddleware, ASGIApp, resolve_access
from gearshift.serving.app import AppLimits, answer_on_cancel, create_app
from gearshift.serving.dataplane import DataPlane
from gearshift.serving.metrics import Metrics
from gearshift.types import StatusDoc
from gearshift.zoo.spec import PoolSpec, model_outputs

log = logging.getLogger("gearshift.ray.ingress")

NodeCall = Callable[[dict[str, np.ndarray], str | None, float], Awaitable[InferResult | NodeError]]


def raise_node_error(err: NodeError) -> None:
    """Raise the error a node answered with, as the class it raised (a plain 500 if unknown)."""
    cls = getattr(errors, err.kind, None)
    if cls is Overloaded:
        raise Overloaded(err.message, err.retry_after_s or 1.0)
    if isinstance(cls, type) and issubclass(cls, GearshiftError):
        raise cls(err.message)
    raise WorkerFailed(err.message)


class NodeRouter:
    """The part of `ReplicaPool` the data plane uses, over the cluster's nodes."""

    def __init__(self, spec: PoolSpec, call: NodeCall,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.spec = spec
        self._call = call
        self._clock = clock

    async def infer(self, inputs: dict[str, np.ndarray], variant: str | None = None,
                    deadline_s: float | None = None) -> InferResult:
        budget_s = float("inf") if deadline_s is None else deadline_s - self._clock()
        try:
            answer = await self._call(inputs, variant, budget_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the node (or its process) lost with the request
            log.warning("node call failed: %s: %s", type(exc).__name__, exc)
            raise Overloaded(f"the node serving this request was lost "
                             f"({type(exc).__name__}); retry", retry_after_s=1.0) from None
        if isinstance(answer, NodeError):
            raise_node_error(answer)
        assert isinstance(answer, InferResult)
        return answer


class ClusterIngress:
    """The V2 app over a `NodeRouter`, its status from the controller's summary (polled every
    period: the gauges of `/metrics` follow it)."""

    def __init__(self, spec: PoolSpec, call: NodeCall,
                 summary: Callable[[], Awaitable[ClusterSummary]], period_s: float,
                 limits: AppLimits | None = None, auth_token: str | None = None) -> None:
        self.spec = spec
        self.router = NodeRouter(spec, call)
        # the data plane uses a pool's `spec` and `infer` only: the router has both
        self.plane = DataPlane(self.router, Metrics(),  # type: ignore[arg-type]
                               outputs=model_outputs(spec))
        self._summary = summary
        self.period_s = period_s
        self.limits = limits or AppLimits()
        self.auth_token = auth_token
        self.last: ClusterSummary | None = None
        self.started_s = time.perf_counter()
        self.last_error = ""

    def is_ready(self) -> bool:
        return self.last is not None and any(r.workers_ready for r in self.last.nodes)

    def status(self) -> StatusDoc:
        s = self.last
        d = s.decision if s else None
        nodes = s.nodes if s else ()
        return {
            "ready": self.is_ready(), "uptime_s": round(time.perf_counter() - self.started_s, 3),
            "application": self.spec.application, "variant": d.variant if d else "",
            "replicas": d.allocation.replicas if d else 0,
            "threads": d.allocation.threads if d else 0,
            "workers_ready": sum(r.workers_ready for r in nodes),
            "queue_length": sum(r.queue_length for r in nodes),
            "in_flight": sum(r.in_flight for r in nodes),
            "rate_rps": s.rate_rps if s else 0.0, "switches": s.switches if s else 0,
            "allocation_changes": s.allocation_changes if s else 0, "worker_restarts": 0,
            "served": sum(r.served for r in nodes), "failed": sum(r.failed for r in nodes),
            "expired": sum(r.expired for r in nodes), "rejected": sum(r.rejected for r in nodes),
            "fallbacks": 0, "upgrades": 0, "disconnects": self.plane.disconnects,
            "policy": s.policy if s else "", "last_decision": asdict(d) if d else None,
            "last_error": self.last_error or (s.last_error if s else ""),
            "nodes": [{"node": r.node, "pid": r.pid, "variant": r.current.variant,
                       "replicas": r.current.allocation.replicas,
                       "threads": r.current.allocation.threads,
                       "workers_ready": r.workers_ready, "queue_length": r.queue_length}
                      for r in nodes],
        }

    async def _follow(self) -> None:
        while True:
            try:
                self.last = await self._summary()
                self.last_error = ""
                self.plane.metrics.observe_pool(self.last.pool_status(),
                                                self.spec.variant_names(), self.last.rate_rps)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the controller restarting: keep serving
                self.last_error = f"controller unreachable: {type(exc).__name__}: {exc}"
            await asyncio.sleep(self.period_s)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(self._follow())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def asgi(self) -> ASGIApp:
        """The app: management endpoints closed (the controller is chosen at deploy time),
        a bearer token on every endpoint but liveness if one is given; any Host (Ray's proxy
        decides where it listens)."""
        access = resolve_access("0.0.0.0", self.auth_token,
                                "token" if self.auth_token else "closed", ("*",))
        app = create_app(self.plane, self.is_ready, self.status, self.limits.max_body_bytes,
                         self._lifespan, None, self.limits)
        return answer_on_cancel(AccessMiddleware(app, access))
