"""Co-running: a variant's service time while the other replica serves another variant.

The profile measures each (variant, R x T) with every replica serving that variant; live, a
replica serves a fallback (or the old variant, during a switch) beside one serving the variant in
force. If a pair slowed each other beyond what two replicas of one variant do (a shared cache or
memory bandwidth), the simulator and the planner, which draw from the single-variant entries,
would flatter the mixed case. This measures the pairwise table through the real replica pool at
R replicas of 1 thread (R = the cores): for every pair (a, b), one closed loop on a and one on
b, one request outstanding each, so that one replica serves a and another b throughout; the pairs
take turns in rounds, so that a slow spell of the machine hits them alike. Reported: the median
service time of a beside b, and its ratio to a beside a (measured in the same rounds).

Run by hand, nothing else running (about 3 minutes for 5 variants at the defaults):
    .venv/bin/python benchmarks/bench_corun.py out/demo/zoo/resnet/pool.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np

from gearshift.engine.pool import PoolSettings, ReplicaPool
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import load_pool_spec

Samples = dict[tuple[str, str], list[float]]  # (served, beside) -> service ms


async def _loop(pool: ReplicaPool, x: dict[str, np.ndarray], variant: str, until: float,
                out: list[float]) -> None:
    while time.perf_counter() < until:
        out.append((await pool.infer(x, variant=variant)).service_ms)


async def _pair(pool: ReplicaPool, x: dict[str, np.ndarray], a: str, b: str, seconds: float,
                warmup_s: float) -> tuple[list[float], list[float]]:
    """(a's service times, b's) with one request of each outstanding for `seconds`, after
    `warmup_s` of the same not counted (the replicas' caches and the loops settle)."""
    until = time.perf_counter() + warmup_s
    await asyncio.gather(_loop(pool, x, a, until, []), _loop(pool, x, b, until, []))
    sa: list[float] = []
    sb: list[float] = []
    until = time.perf_counter() + seconds
    await asyncio.gather(_loop(pool, x, a, until, sa), _loop(pool, x, b, until, sb))
    return sa, sb


async def measure(pool_yaml: Path, rounds: int, seconds: float, warmup_s: float) -> Samples:
    spec = load_pool_spec(pool_yaml)
    x = {spec.input.name: np.random.default_rng(0).standard_normal(
        (1, *spec.input.shape)).astype(spec.input.dtype)}
    names = spec.variant_names()
    cores = len(os.sched_getaffinity(0))
    samples: Samples = {(a, b): [] for a in names for b in names}
    pairs = list(combinations_with_replacement(names, 2))
    async with ReplicaPool(spec, PoolSettings(keep_warm=False)) as pool:
        await pool.apply(Decision(pool.variant, Allocation(cores, 1)))
        for r in range(rounds):
            for i, (a, b) in enumerate(pairs):
                print(f"\rround {r + 1}/{rounds}: pair {i + 1}/{len(pairs)} {a} + {b}    ",
                      end="", flush=True)
                sa, sb = await _pair(pool, x, a, b, seconds, warmup_s)
                samples[(a, b)] += sa
                samples[(b, a)] += sb if a != b else []
    print()
    return samples


def table(samples: Samples) -> tuple[str, dict[str, dict[str, float]]]:
    """A Markdown table (rows: the variant served; columns: the one beside it; cells: median ms
    and its ratio to the row beside itself) and the ratios."""
    names = list(dict.fromkeys(a for a, _ in samples))
    lines = ["| served \\ beside | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    ratios: dict[str, dict[str, float]] = {}
    for a in names:
        alone = float(np.median(samples[(a, a)]))
        ratios[a] = {b: float(np.median(samples[(a, b)])) / alone for b in names}
        cells = [f"{np.median(samples[(a, b)]):.1f} ({ratios[a][b]:.2f}, n={len(samples[(a, b)])})"
                 for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines), ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool", type=Path, help="a pool.yaml")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured per pair and round")
    ap.add_argument("--warmup", type=float, default=0.5, help="not measured, per pair and round")
    ap.add_argument("--json", type=Path, help="also write the samples' medians and ratios here")
    a = ap.parse_args()
    samples = asyncio.run(measure(a.pool, a.rounds, a.seconds, a.warmup))
    text, ratios = table(samples)
    print(text)
    off = [r for row in ratios.values() for r in row.values()]
    print(f"\nratio to the same variant beside itself: min {min(off):.2f}, max {max(off):.2f}")
    if a.json:
        a.json.write_text(json.dumps({"ratios": ratios, "median_ms": {
            f"{x}|{y}": float(np.median(s)) for (x, y), s in samples.items()}}, indent=1))


if __name__ == "__main__":
    main()
