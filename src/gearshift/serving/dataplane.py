"""The data plane: a decoded KServe V2 request in, one answer out, with deadline and accounting.

Resolves the model name (the application: whichever variant is active; a variant's name: pinned
to it), applies the request's deadline (`parameters.deadline_ms`, else the pool spec's), queues
it on the replica pool and builds the response parameters (answering variant, queue and service
time). It also keeps the per-period window the controller observes. No web framework here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gearshift.engine.pool import ReplicaPool
from gearshift.errors import BadRequest, GearshiftError, ModelNotFound
from gearshift.protocol import DecodedRequest
from gearshift.serving.metrics import Metrics


@dataclass
class Window:
    """What happened since the controller last looked."""

    arrivals: int = 0
    completed: int = 0
    missed: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else math.nan


@dataclass(frozen=True)
class Answer:
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any]


class DataPlane:
    def __init__(self, pool: ReplicaPool, metrics: Metrics,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.pool = pool
        self.spec = pool.spec
        self.metrics = metrics
        self._clock = clock
        self._variants = set(self.spec.variant_names())
        self.window = Window()

    def take_window(self) -> Window:
        w, self.window = self.window, Window()
        return w

    def resolve(self, model: str) -> str | None:
        """None for the application (active variant), else the pinned variant's name."""
        if model == self.spec.application:
            return None
        if model in self._variants:
            return model
        names = ", ".join([self.spec.application, *self.spec.variant_names()])
        raise ModelNotFound(f"unknown model {model!r}; this server has: {names}")

    def deadline_ms(self, params: dict[str, Any]) -> float:
        value = params.get("deadline_ms", self.spec.deadline_ms)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise BadRequest(f"parameters.deadline_ms must be a positive number, got {value!r}")
        return float(value)

    async def infer(self, model: str, req: DecodedRequest) -> Answer:
        t0 = self._clock()
        self.window.arrivals += 1
        try:
            pinned = self.resolve(model)
            self.metrics.requests.labels(model).inc()  # known names only: bounded labels
            deadline_ms = self.deadline_ms(req.parameters)
            result = await self.pool.infer(req.inputs, pinned, t0 + deadline_ms / 1000.0)
        except GearshiftError as exc:
            self._account_error(exc)
            raise
        latency_ms = (self._clock() - t0) * 1000.0
        on_time = latency_ms <= deadline_ms
        self._account(result.variant, latency_ms, on_time)
        outputs = result.outputs
        if req.outputs is not None:
            unknown = [n for n in req.outputs if n not in outputs]
            if unknown:
                raise BadRequest(f"unknown output(s) {unknown}; the model has {sorted(outputs)}")
            outputs = {n: outputs[n] for n in req.outputs}
        params = {"variant": result.variant, "queue_ms": round(result.queue_ms, 3),
                  "service_ms": round(result.service_ms, 3), "deadline_ms": deadline_ms,
                  "on_time": on_time}
        return Answer(outputs, params)

    def _account(self, variant: str, latency_ms: float, on_time: bool) -> None:
        w = self.window
        w.completed += 1
        w.latencies_ms.append(latency_ms)
        w.missed += 0 if on_time else 1
        self.metrics.answered.labels(variant).inc()
        self.metrics.latency.labels(variant).observe(latency_ms / 1000.0)
        if on_time:
            self.metrics.on_time.labels(variant).inc()

    def _account_error(self, exc: GearshiftError) -> None:
        if exc.status >= 500:  # shed, expired or failed: the request was not answered in time
            self.window.missed += 1
        self.metrics.errors.labels(str(exc.status)).inc()
