"""The data plane: a decoded KServe V2 request in, one answer out, with deadline and accounting.

Resolves the model name (the application: whichever variant is active; a variant's name: pinned
to it), applies the request's deadline (`parameters.deadline_ms`, else the pool spec's), queues
it on the replica pool and builds the response parameters (answering variant, queue and service
time). It also keeps the per-period window the controller observes: an arrival is a request that
passed validation and was offered to the pool (answered, shed by a full queue or expired), so
a flood of malformed, unknown-model or unknown-output requests cannot move the controller. A request whose
client left while it waited is cancelled (its queued job is skipped at dispatch) and counted in
`disconnects`. No web framework here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gearshift.engine.pool import ReplicaPool
from gearshift.engine.pool_types import InferResult
from gearshift.errors import BadRequest, GearshiftError, ModelNotFound
from gearshift.policy import ServiceTimes
from gearshift.protocol import DecodedRequest, InputSignature, datatype_of
from gearshift.serving.metrics import Metrics
from gearshift.types import JSONObject
from gearshift.zoo.spec import OutputInfo


@dataclass
class Window:
    """What happened since the controller last looked."""

    arrivals: int = 0
    arrival_s: list[float] = field(default_factory=list)  # when, on the data plane's clock
    completed: int = 0
    missed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    service: list[ServiceTimes] = field(default_factory=list)  # each answer's

    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else math.nan

    def arrived(self, t_s: float) -> None:
        self.arrivals += 1
        self.arrival_s.append(t_s)

    def answered(self, latency_ms: float, on_time: bool, variant: str, threads: int,
                 service_ms: float) -> None:
        self.completed += 1
        self.service.append(ServiceTimes(variant, threads, 1, service_ms))
        self.latencies_ms.append(latency_ms)
        self.missed += 0 if on_time else 1

    def failed(self, exc: GearshiftError) -> None:
        if exc.status >= 500:  # shed, expired or failed: the request was not answered in time
            self.missed += 1


@dataclass(frozen=True)
class Answer:
    outputs: dict[str, np.ndarray]
    parameters: JSONObject


MAX_DEADLINE_MS = 3_600_000  # one hour: beyond it a deadline means nothing to the drop rule


class DataPlane:
    def __init__(self, pool: ReplicaPool, metrics: Metrics,
                 clock: Callable[[], float] = time.perf_counter,
                 outputs: Mapping[str, Sequence[OutputInfo]] | None = None) -> None:
        """`outputs`: each variant's outputs, to refuse a request for an output no variant
        that may answer it has before it is queued (a variant left out is not checked), and
        for the model metadata."""
        self.pool = pool
        self._info = {k: list(v) for k, v in (outputs or {}).items()}
        self._outputs = {k: frozenset(o.name for o in v) for k, v in self._info.items()}
        self.spec = pool.spec
        self.metrics = metrics
        self._clock = clock
        self._variants = set(self.spec.variant_names())
        self.window = Window()
        self.disconnects = 0
        self.signature = InputSignature(self.spec.input.name, datatype_of(self.spec.input.dtype),
                                        tuple(self.spec.input.shape))

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
        shown = model if len(model) <= 64 else model[:64] + "..."
        raise ModelNotFound(f"unknown model {shown!r}; this server has: {names}")

    def deadline_ms(self, params: JSONObject) -> float:
        """`parameters.deadline_ms`: a number of milliseconds in (0, 1 hour], else the spec's."""
        value = params.get("deadline_ms", self.spec.deadline_ms)
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not 0 < value <= MAX_DEADLINE_MS):  # NaN fails; big ints compare exactly
            shown = repr(value)[:40] if not isinstance(value, int) or abs(value) < 10**30 \
                else "a number too large"
            raise BadRequest(f"parameters.deadline_ms must be a positive number of milliseconds "
                             f"up to {MAX_DEADLINE_MS} (one hour), got {shown}")
        return float(value)

    def outputs_of(self, name: str) -> list[OutputInfo]:
        """The outputs of variant `name`, or for the application those every variant has
        (a dimension the variants disagree on is -1); [] where unknown."""
        variants = self.spec.variant_names() if name == self.spec.application else [name]
        if not variants or any(v not in self._info for v in variants):
            return []
        first, *rest = (self._info[v] for v in variants)
        merged = []
        for o in first:
            same = [p for r in rest for p in r if p.name == o.name and p.dtype == o.dtype
                    and len(p.shape) == len(o.shape)]
            if len(same) != len(rest):
                continue
            shape = tuple(d if all(p.shape[i] == d for p in same) else -1
                          for i, d in enumerate(o.shape))
            merged.append(OutputInfo(o.name, o.dtype, shape))
        return merged

    def check_outputs(self, pinned: str | None, requested: list[str] | None) -> None:
        """Refuse (400) requested outputs that the pinned variant, or for the application every
        variant, lacks; a variant whose outputs are unknown here is not checked."""
        if requested is None:
            return
        variants = [pinned] if pinned is not None else self.spec.variant_names()
        if any(v not in self._outputs for v in variants):
            return
        known = frozenset().union(*(self._outputs[v] for v in variants))
        unknown = [n if len(n) <= 64 else n[:64] + "..." for n in requested if n not in known]
        if unknown:
            raise BadRequest(f"unknown output(s) {unknown[:8]}; the model has {sorted(known)}")

    async def infer(self, model: str, req: DecodedRequest) -> Answer:
        t0 = self._clock()
        try:
            pinned = self.resolve(model)
            deadline_ms = self.deadline_ms(req.parameters)
            self.check_outputs(pinned, req.outputs)
        except GearshiftError as exc:
            self._account_error(exc)
            raise
        self.metrics.requests.labels(model).inc()  # known names only: bounded labels
        self.window.arrived(t0)  # valid: offered to the pool
        try:
            result = await self.pool.infer(req.inputs, pinned, t0 + deadline_ms / 1000.0)
        except GearshiftError as exc:
            self._account_error(exc)
            raise
        except asyncio.CancelledError:  # the client left (or the server is stopping)
            self.disconnects += 1
            raise
        latency_ms = (self._clock() - t0) * 1000.0
        on_time = latency_ms <= deadline_ms
        self._account(result, latency_ms, on_time)
        outputs = result.outputs
        if req.outputs is not None:
            unknown = [n for n in req.outputs if n not in outputs]
            if unknown:  # the variant that answered lacks one another variant has
                raise BadRequest(f"unknown output(s) {unknown[:8]}; the variant "
                                 f"{result.variant!r} has {sorted(outputs)}")
            outputs = {n: outputs[n] for n in req.outputs}
        params: JSONObject = {
            "variant": result.variant, "queue_ms": round(result.queue_ms, 3),
            "service_ms": round(result.service_ms, 3),
            "handoff_ms": round(result.handoff_ms, 3), "served_as": result.served_as,
            "deadline_ms": deadline_ms, "on_time": on_time}
        return Answer(outputs, params)

    def _account(self, result: InferResult, latency_ms: float, on_time: bool) -> None:
        variant = result.variant
        self.window.answered(latency_ms, on_time, variant, result.threads, result.service_ms)
        self.metrics.answered.labels(variant).inc()
        self.metrics.latency.labels(variant).observe(latency_ms / 1000.0)
        self.metrics.handoff.labels(variant).observe(result.handoff_ms / 1000.0)
        if on_time:
            self.metrics.on_time.labels(variant).inc()

    def _account_error(self, exc: GearshiftError) -> None:
        self.window.failed(exc)
        self.metrics.errors.labels(str(exc.status)).inc()
