"""Value types of the replica pool: its settings, a request's result, its counters, input checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gearshift.dispatch import PathOverhead
from gearshift.errors import BadRequest
from gearshift.types import DropRule, ServedAs
from gearshift.zoo.spec import PoolSpec


@dataclass(frozen=True)
class PoolSettings:
    max_queue: int = 1024
    spinning: bool = False
    keep_warm: bool = True
    start_timeout_s: float = 300.0
    max_restarts: int = 20
    # A replica that has not answered a call within this long is taken to be wedged: it is
    # killed (its request answered with an error) and replaced.
    call_timeout_s: float = 30.0
    # How often queued requests are checked for a deadline that has passed (they are answered
    # at once, not when a replica frees up) and busy replicas for a call past `call_timeout_s`.
    sweep_period_s: float = 0.05
    transport: Literal["shm", "pipe"] = "shm"  # inputs via a shared-memory slot, or inline
    # A request with a deadline is not served when it is found, at dispatch, to be past it
    # ("expired"), or also when its variant's recent median service time and the path's mean
    # overhead would overrun it
    # ("hopeless": frees the replica for requests that can still make it), or never.
    drop: DropRule = "hopeless"
    # Expected service time (ms) per (variant, threads) until the pool has measured its own,
    # e.g. from a profile; used by the "hopeless" rule.
    expected_service_ms: dict[tuple[str, int], float] = field(default_factory=dict)
    # ... and service-time samples (ms), plus the serving path's mean overhead (ms): with
    # fallbacks, a request goes to the first of the variant in force and its fallbacks likely
    # enough to make it (`types.safe_quantiles`); the pool's own recent times replace these.
    service_samples_ms: dict[tuple[str, int], tuple[float, ...]] = field(default_factory=dict)
    overhead_ms: float = 0.0
    # ... except while a path-bound entry (variant, threads) is in force: its path's cost at
    # the pool's offered rate of the last second (`gearshift.dispatch.PathOverhead`)
    path_overhead: dict[tuple[str, int], PathOverhead] = field(default_factory=dict)
    slot_items: int = 8  # the slot holds a batch of this many items; larger batches go inline
    cores: tuple[int, ...] | None = None  # None: the cores this process may run on


@dataclass(frozen=True)
class InferResult:
    outputs: dict[str, np.ndarray]
    variant: str
    queue_ms: float
    service_ms: float
    worker_id: int
    threads: int = 0  # of the replica that served it
    handoff_ms: float = 0.0  # the replica held beyond `service_ms`: the hand-offs to and from it
    served_as: ServedAs = ""  # what `variant` was to the decision in force (`dispatch.served_as`)


@dataclass
class PoolCounters:
    switches: int = 0
    allocation_changes: int = 0
    worker_restarts: int = 0
    served: int = 0
    failed: int = 0
    expired: int = 0
    fallbacks: int = 0  # requests answered by a fallback variant, not the one in force
    upgrades: int = 0  # requests answered by an upgrade, a more accurate variant than in force
    rejected: int = 0
    hung: int = 0  # replicas killed for not answering within `call_timeout_s`
    last_error: str = ""
    service_ms_ewma: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def validate_inputs(spec: PoolSpec, inputs: dict[str, np.ndarray]) -> None:
    """The declared input is present with the declared dtype and per-item shape."""
    want = spec.input
    if want.name not in inputs:
        raise BadRequest(f"missing input {want.name!r}; got {sorted(inputs) or 'no inputs'}")
    x = inputs[want.name]
    if x.dtype != np.dtype(want.dtype):
        raise BadRequest(f"input {want.name!r} must be {want.dtype}, got {x.dtype}")
    if x.ndim != len(want.shape) + 1 or list(x.shape[1:]) != want.shape or x.shape[0] < 1:
        raise BadRequest(
            f"input {want.name!r} must have shape [batch, {', '.join(map(str, want.shape))}], "
            f"got {list(x.shape)}"
        )
