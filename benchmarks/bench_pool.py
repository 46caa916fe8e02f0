"""Replica pool overheads: pool vs raw ONNX Runtime throughput, switch latency, R x T change time,
replica memory, and spinning on vs off.

Run by hand (minutes, uses every core):
    .venv/bin/python benchmarks/bench_pool.py --pool out/zoo/pool.yaml --seconds 8
Raw and pool runs are interleaved (raw, pool, raw, pool) so that drift on a shared machine hits
both; ratios are computed within one run. Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from gearshift.cores import assign_slots
from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.runtime.base import RuntimeSettings, load_runtime
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import PoolSpec, load_pool_spec


def raw_throughput(spec: PoolSpec, variant: str, alloc: Allocation, seconds: float,
                   spinning: bool) -> float:
    """R threads in this process, each pinned to its T cores with its own T-thread session in
    the variant's engine."""
    x = np.random.default_rng(0).standard_normal((1, *spec.input.shape)).astype(np.float32)
    slots = assign_slots(alloc.replicas, alloc.threads, sorted(os.sched_getaffinity(0)))
    counts = [0] * alloc.replicas
    barrier = threading.Barrier(alloc.replicas + 1)
    stop = threading.Event()

    def run(i: int) -> None:
        os.sched_setaffinity(0, slots[i].cores)  # this thread; ORT's pool threads inherit it
        rt = load_runtime({variant: spec.model_file(variant)},
                          RuntimeSettings(threads=alloc.threads, spinning=spinning))
        for _ in range(3):
            rt.infer(variant, {spec.input.name: x})
        barrier.wait()
        while not stop.is_set():
            rt.infer(variant, {spec.input.name: x})
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(alloc.replicas)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    total = sum(counts)
    elapsed = time.perf_counter() - t0
    for t in threads:
        t.join()
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return total / elapsed


async def _closed_loop(pool: ReplicaPool, x: np.ndarray, name: str, seconds: float,
                       concurrency: int, variant: str | None) -> tuple[int, list[float]]:
    done = 0
    overhead: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = await pool.infer({name: x}, variant=variant)
            overhead.append((time.perf_counter() - t0) * 1000 - r.queue_ms - r.service_ms)
            done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done, overhead


async def pool_throughput(spec: PoolSpec, variant: str, alloc: Allocation, seconds: float,
                          spinning: bool) -> tuple[float, float]:
    """Closed loop with 2 requests per replica outstanding; returns (req/s, p50 overhead ms)."""
    x = np.random.default_rng(0).standard_normal((1, *spec.input.shape)).astype(np.float32)
    async with ReplicaPool(spec, PoolSettings(spinning=spinning, keep_warm=False)) as pool:
        await pool.apply(Decision(variant, alloc))
        await _closed_loop(pool, x, spec.input.name, 1.0, 2 * alloc.replicas, None)
        t0 = time.perf_counter()
        n, overhead = await _closed_loop(pool, x, spec.input.name, seconds,
                                         2 * alloc.replicas, None)
        rate = n / (time.perf_counter() - t0)
    return rate, statistics.median(overhead)


async def switch_and_realloc(spec: PoolSpec) -> dict[str, float]:
    """Variant switch call latency under load, and R x T change times (cold, then parked)."""
    x = np.random.default_rng(0).standard_normal((1, *spec.input.shape)).astype(np.float32)
    names = spec.variant_names()
    res: dict[str, float] = {}
    async with ReplicaPool(spec, PoolSettings(keep_warm=True)) as pool:
        t0 = time.perf_counter()
        await pool.apply(Decision(names[0], Allocation(2, 1)))
        res["start_2x1_s"] = time.perf_counter() - t0
        res["replica_rss_mb"] = max(pool.worker_memory().values()) / 2**20
        load = asyncio.create_task(_closed_loop(pool, x, spec.input.name, 6.0, 4, None))
        lat = []
        for k in range(2000):
            t = time.perf_counter_ns()
            pool.apply(Decision(names[k % len(names)], Allocation(2, 1)))
            lat.append((time.perf_counter_ns() - t) / 1e6)
            if k % 20 == 0:
                await asyncio.sleep(0.002)
        res["switch_p50_ms"] = float(np.percentile(lat, 50))
        res["switch_p99_ms"] = float(np.percentile(lat, 99))
        t0 = time.perf_counter()
        await pool.apply(Decision(pool.variant, Allocation(1, 2)))
        res["realloc_cold_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await pool.apply(Decision(pool.variant, Allocation(2, 1)))
        res["realloc_parked_s"] = time.perf_counter() - t0
        await load
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, required=True)
    ap.add_argument("--variants", default="resnet18,resnet50")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--allocations", default="2x1,1x2")
    ap.add_argument("--spinning", default="off,on")
    ap.add_argument("--no-switch", action="store_true", help="skip the switch/realloc part")
    args = ap.parse_args()
    spec = load_pool_spec(args.pool)
    print(f"cores: {sorted(os.sched_getaffinity(0))}")
    print("| variant | RxT | spinning | raw req/s | pool req/s | pool/raw | pool overhead p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        for alloc in (Allocation.parse(a) for a in args.allocations.split(",")):
            for spinning in (v == "on" for v in args.spinning.split(",")):
                raws, pools, ovh = [], [], []
                for _ in range(args.rounds):
                    raws.append(raw_throughput(spec, variant, alloc, args.seconds, spinning))
                    rate, o = asyncio.run(pool_throughput(spec, variant, alloc, args.seconds,
                                                          spinning))
                    pools.append(rate)
                    ovh.append(o)
                raw, pl = statistics.mean(raws), statistics.mean(pools)
                print(f"| {variant} | {alloc} | {'on' if spinning else 'off'} | {raw:.1f} | "
                      f"{pl:.1f} | {pl / raw:.3f} | {statistics.median(ovh):.2f} |", flush=True)
    if args.no_switch:
        return
    res = asyncio.run(switch_and_realloc(spec))
    for k, v in res.items():
        print(f"{k}: {v:.4f}")


if __name__ == "__main__":
    main()
