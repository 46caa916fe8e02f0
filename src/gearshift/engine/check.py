"""Smoke-check a pool: bring it up at each allocation and serve one request from every variant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import PoolSpec


@dataclass(frozen=True)
class CheckRow:
    allocation: Allocation
    variant: str
    service_ms: float
    top_class: int
    load_s: float  # time to bring the allocation up (0 when its replicas were already loaded)
    rss_mb: float  # resident memory of one replica holding every variant


async def check_pool(
    spec: PoolSpec,
    allocations: list[Allocation],
    settings: PoolSettings = PoolSettings(),
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[CheckRow]:
    """One request per variant at each allocation, on a random input of the declared shape."""
    x = np.random.default_rng(0).standard_normal((1, *spec.input.shape)).astype(spec.input.dtype)
    rows: list[CheckRow] = []
    async with ReplicaPool(spec, settings) as pool:
        for alloc in allocations:
            progress(f"loading {len(spec.variants)} variants into {alloc} replicas")
            t0 = time.perf_counter()
            await pool.apply(Decision(pool.variant, alloc))
            load_s = time.perf_counter() - t0
            rss_mb = max(pool.worker_memory().values()) / 2**20
            for v in spec.variant_names():
                progress(f"{alloc}: {v}")
                r = await pool.infer({spec.input.name: x}, variant=v)
                out = next(iter(r.outputs.values()))
                rows.append(CheckRow(alloc, v, r.service_ms, int(np.argmax(out[0])), load_s, rss_mb))
    return rows


def run_check(spec: PoolSpec, allocations: list[Allocation], **kw: object) -> list[CheckRow]:
    return asyncio.run(check_pool(spec, allocations, **kw))  # type: ignore[arg-type]
