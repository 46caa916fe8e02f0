"""What int8 buys on this CPU: service time per (variant, precision, threads) and the memory of
one replica holding every variant, for the fp32 ResNet pool and the mixed pool.

Takes the folder `gearshift zoo build resnet-int8 --out DIR` wrote (DIR/all/pool.yaml holds
every depth in fp32 and int8, DIR/pool.yaml the pruned mixed pool, DIR/fp32/pool.yaml the fp32
pool). Service time: the median of single-item runs, models taking turns in rounds (so a burst
elsewhere hits all alike), at 1 and 2 ONNX Runtime threads. Memory: the resident set of one
replica with every variant of the pool loaded, as `gearshift pool check` reports it.

Run by hand, nothing else running (about 4 minutes):
    .venv/bin/python benchmarks/bench_precision.py out/demo/zoo/resnet-int8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gearshift.engine.check import run_check
from gearshift.types import Allocation
from gearshift.zoo.evaluate import batch1_latencies_ms
from gearshift.zoo.spec import load_pool_spec


def service_table(pool: Path, runs: int) -> list[dict[str, object]]:
    """Median batch-1 ms of every variant of `pool` at 1 and 2 threads."""
    spec = load_pool_spec(pool)
    names = spec.variant_names()
    rows: dict[str, dict[str, object]] = {n: {"variant": n, "accuracy": spec.accuracy_of(n)}
                                          for n in names}
    for threads in (1, 2):
        ms = batch1_latencies_ms([spec.model_file(n) for n in names], spec.input.shape,
                                 threads, runs=runs, rounds=5, warmup=3)
        for n, m in zip(names, ms, strict=True):
            rows[n][f"ms_{threads}t"] = round(m, 2)
    return list(rows.values())


def replica_mb(pool: Path) -> float:
    """Resident MB of one 2-thread replica holding every variant of `pool`."""
    rows = run_check(load_pool_spec(pool), [Allocation(1, 2)])
    return rows[0].rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mixed", type=Path, help="the folder `zoo build resnet-int8` wrote")
    ap.add_argument("--runs", type=int, default=30, help="runs per model and thread count")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    table = service_table(a.mixed / "all" / "pool.yaml", a.runs)
    kept = set(load_pool_spec(a.mixed / "pool.yaml").variant_names())
    print("| variant | accuracy (declared) | 1 thread ms | 2 threads ms | in the mixed pool |")
    print("|---|---|---|---|---|")
    for r in table:
        print(f"| {r['variant']} | {r['accuracy']:.5f} | {r['ms_1t']} | {r['ms_2t']} | "
              f"{'yes' if r['variant'] in kept else 'no'} |")
    memory = {name: round(replica_mb(a.mixed / sub / "pool.yaml"), 0)
              for name, sub in (("fp32", "fp32"), ("mixed", "."))}
    print(f"one 1x2 replica with every variant loaded: fp32 pool {memory['fp32']:.0f} MB, "
          f"mixed pool {memory['mixed']:.0f} MB")
    if a.json:
        a.json.write_text(json.dumps({"service": table, "replica_mb": memory}, indent=2))


if __name__ == "__main__":
    main()
