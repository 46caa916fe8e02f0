"""What a switch costs the first requests after it: their service times against the steady ones.

The simulator prices a change of variant as nothing and a change of R x T as a wait for the old
replicas' cores (requests dispatched meanwhile go to the old replicas, already with the new
variant). If a replica parked for a while, or a variant not run for a while, served its first
requests slower (cold caches, weights paged out, a thread pool asleep), the simulator would
flatter every switch. This drives the real replica pool (every allocation of 2 cores parked, as
`gearshift serve` runs it) through switches between a heavy and a light variant, with and
without another R x T, each after a spell on the old choice, and prints the service times of
the first requests after the switch beside the steady median that follows.

Run by hand, nothing else running (about a minute):
    .venv/bin/python benchmarks/bench_handover.py out/demo/zoo/resnet/pool.yaml \
        --heavy resnet101 --light resnet18
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np

from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.profiling.profiler import closed_loop
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import load_pool_spec

TWO_BY_ONE, ONE_BY_TWO = Allocation(2, 1), Allocation(1, 2)


async def _serve(pool: ReplicaPool, x: dict[str, np.ndarray], variant: str, count: int,
                 concurrency: int) -> list[float]:
    """Service times (ms) of `count` requests for `variant`, `concurrency` outstanding, in the
    order they were answered (`profiler.closed_loop`)."""
    service, _, _ = await closed_loop(pool, x, variant, count, concurrency)
    return service


async def run(pool_yaml: Path, heavy: str, light: str, rounds: int, first: int,
              spell_s: float) -> list[tuple[str, list[float], float]]:
    spec = load_pool_spec(pool_yaml)
    x = {spec.input.name: np.random.default_rng(0).standard_normal(
        (1, *spec.input.shape)).astype(spec.input.dtype)}
    switches = [((heavy, TWO_BY_ONE), (light, ONE_BY_TWO)),
                ((heavy, TWO_BY_ONE), (light, TWO_BY_ONE)),
                ((light, ONE_BY_TWO), (heavy, TWO_BY_ONE)),
                ((heavy, ONE_BY_TWO), (light, TWO_BY_ONE))]
    rows: list[tuple[str, list[float], float]] = []
    async with ReplicaPool(spec, PoolSettings(keep_warm=True)) as pool:
        await pool.apply(Decision(heavy, TWO_BY_ONE))
        await pool.prewarm([TWO_BY_ONE, ONE_BY_TWO])
        steady_ms = {v: float(np.median(await _serve(pool, x, v, 8, 2))) for v in (heavy, light)}
        for r in range(rounds):
            for i, ((old, old_alloc), (new, new_alloc)) in enumerate(switches):
                print(f"\rround {r + 1}/{rounds}, switch {i + 1}/{len(switches)}   ", end="",
                      flush=True)
                await pool.apply(Decision(old, old_alloc))
                spell = max(4, round(spell_s * 1000.0 / steady_ms[old]))  # requests per replica
                await _serve(pool, x, old, spell * old_alloc.replicas, 2 * old_alloc.replicas)
                done = pool.apply(Decision(new, new_alloc))
                head = await _serve(pool, x, new, first, 2 * new_alloc.replicas)
                await done
                steady = await _serve(pool, x, new, 16, 2 * new_alloc.replicas)
                rows.append((f"{old} {old_alloc} -> {new} {new_alloc}", head,
                             float(np.median(steady))))
    print()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool", type=Path, help="a pool.yaml (2 cores: the allocations 2x1 and 1x2)")
    ap.add_argument("--heavy", required=True)
    ap.add_argument("--light", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--first", type=int, default=8, help="requests counted as the first")
    ap.add_argument("--spell", type=float, default=3.0, help="seconds on the old choice")
    a = ap.parse_args()
    rows = asyncio.run(run(a.pool, a.heavy, a.light, a.rounds, a.first, a.spell))
    print(f"| switch | first {a.first} service ms, in order | steady median ms |")
    print("|---|---|---|")
    for name, head, steady in rows:
        print(f"| {name} | {' '.join(f'{s:.0f}' for s in head)} | {steady:.1f} |")


if __name__ == "__main__":
    main()
