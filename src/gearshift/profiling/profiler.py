"""Measure every (variant, R, T) of a core budget through the real replica pool.

For each allocation R x T with R * T == cores, the pool is brought up once (every variant
loaded in each replica); then for each variant a closed loop keeps 2R requests outstanding, so
every replica is always busy, and each request's service time is taken from the replica's own
timer. Saturation throughput is completed requests over the measuring window. The serving
path's own per-request overhead (queueing code, IPC, event loop: end-to-end time minus service
and queue time) is measured separately with one request outstanding on the lightest variant.
"""

from __future__ import annotations

import asyncio
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import onnxruntime

from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.profiling.profile import AllocationProfile, MachineInfo, Profile
from gearshift.progress import StepCallback as Progress
from gearshift.types import Allocation, Decision, allocations_for
from gearshift.zoo.spec import PoolSpec


@dataclass(frozen=True)
class ProfileSettings:
    cores: int
    samples: int = 200  # service-time samples per (variant, allocation)
    warmup: int = 4  # requests per replica discarded before measuring
    overhead_samples: int = 200


def machine_info(cores: int) -> MachineInfo:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         model)
    except OSError:
        pass
    return MachineInfo(
        cpu_model=model, cores=cores, platform=platform.platform(),
        python=platform.python_version(), onnxruntime=onnxruntime.__version__,
    )


async def closed_loop(
    pool: ReplicaPool, x: dict[str, np.ndarray], variant: str, count: int, concurrency: int
) -> tuple[list[float], list[float], float]:
    """Serve `count` requests with `concurrency` outstanding; (service_ms, overhead_ms, secs)."""
    service: list[float] = []
    overhead: list[float] = []
    remaining = count

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            r = await pool.infer(x, variant=variant)
            e2e_ms = (time.perf_counter() - t0) * 1000.0
            service.append(r.service_ms)
            overhead.append(max(0.0, e2e_ms - r.service_ms - r.queue_ms))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return service, overhead, time.perf_counter() - t0


async def measure(
    spec: PoolSpec, settings: ProfileSettings, progress: Progress = lambda *_: None
) -> Profile:
    """Profile every variant at every allocation of `settings.cores`; see the module doc."""
    x = {spec.input.name: np.random.default_rng(0).standard_normal(
        (1, *spec.input.shape)).astype(spec.input.dtype)}
    allocs = allocations_for(settings.cores)
    names = spec.variant_names()
    total, done = len(allocs) * len(names) + 1, 0
    entries: list[AllocationProfile] = []
    async with ReplicaPool(spec, PoolSettings(keep_warm=False)) as pool:
        for alloc in allocs:
            progress(done, total, f"loading {len(names)} variants into {alloc} replicas")
            await pool.apply(Decision(pool.variant, alloc))
            for v in names:
                progress(done, total, f"{v} at {alloc}")
                entries.append(await _measure_one(pool, x, v, alloc, settings))
                done += 1
        progress(done, total, "serving-path overhead")
        await pool.apply(Decision(pool.variant, allocs[0]))
        lightest = min(entries, key=lambda e: float(np.median(e.service_ms))).variant
        _, overhead, _ = await closed_loop(pool, x, lightest, settings.overhead_samples, 1)
        progress(total, total, "done")
    return Profile(
        application=spec.application, pool_digest=spec.digest(), cores=settings.cores,
        machine=machine_info(settings.cores), created=datetime.now(UTC).isoformat(),
        overhead_ms=[round(o, 4) for o in overhead],
        accuracy={v.name: v.accuracy.value for v in spec.variants}, entries=entries,
    )


async def _measure_one(
    pool: ReplicaPool, x: dict[str, np.ndarray], variant: str, alloc: Allocation,
    settings: ProfileSettings,
) -> AllocationProfile:
    outstanding = 2 * alloc.replicas
    await closed_loop(pool, x, variant, settings.warmup * alloc.replicas, outstanding)
    service, _, secs = await closed_loop(pool, x, variant, settings.samples, outstanding)
    return AllocationProfile(
        variant=variant, replicas=alloc.replicas, threads=alloc.threads,
        service_ms=[round(s, 4) for s in service], throughput_rps=len(service) / secs,
    )
