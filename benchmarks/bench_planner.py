"""Planner speed: seconds to plan 5 variants x 2 allocations x 100 loads (target < 10 s).

Run by hand (seconds, one core):
    .venv/bin/python benchmarks/bench_planner.py                      # ResNet-like synthetic
    .venv/bin/python benchmarks/bench_planner.py --profile out/profile.json --deadline-ms 750
The synthetic profile imitates ResNet-18..152 on 16 cores at 4x4 and 16x1 (log-normal service
times, 2,000 samples each). The kernel is compiled (or loaded from its cache) before timing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gearshift.planning.planner import plan
from gearshift.planning.settings import PlanSettings
from gearshift.profiling.profile import MachineInfo, Profile, load_profile
from gearshift.sim.kernel import warm_up
from gearshift.types import Allocation

RESNETS = {  # variant: (top-1 accuracy, mean service ms at 4x4, mean service ms at 16x1)
    "resnet18": (0.6976, 25.0, 80.0),
    "resnet34": (0.7331, 45.0, 150.0),
    "resnet50": (0.7613, 60.0, 200.0),
    "resnet101": (0.7737, 110.0, 370.0),
    "resnet152": (0.7831, 160.0, 540.0),
}


def resnet_like_profile(samples: int = 2000, seed: int = 0) -> Profile:
    rng = np.random.default_rng(seed)
    entries = []
    for name, (_, ms_4x4, ms_16x1) in RESNETS.items():
        for alloc, mean_ms in ((Allocation(4, 4), ms_4x4), (Allocation(16, 1), ms_16x1)):
            service = mean_ms * rng.lognormal(-0.5 * 0.15**2, 0.15, samples)
            entries.append({
                "variant": name, "replicas": alloc.replicas, "threads": alloc.threads,
                "service_ms": service.tolist(),
                "throughput_rps": alloc.replicas * 1000.0 / float(service.mean()),
            })
    return Profile(
        application="resnet", pool_digest="synthetic", cores=16,
        machine=MachineInfo(cpu_model="synthetic", cores=16, platform="-", python="-",
                            onnxruntime="-"),
        created="2026-01-01T00:00:00", overhead_ms=list(rng.gamma(4.0, 0.5, 1000)),
        accuracy={k: v[0] for k, v in RESNETS.items()}, entries=entries,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--deadline-ms", type=float, default=250.0)
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    profile = load_profile(args.profile) if args.profile else resnet_like_profile()
    warm_up()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        table = plan(profile, args.deadline_ms, None, PlanSettings(duration_s=args.duration_s))
        times.append(time.perf_counter() - t)
    n_rates = len({p.rate_rps for p in table.grid})
    simulated = sum(p.rate_rps for p in table.grid) * args.duration_s
    print(f"candidates: {len(profile.entries)}  loads: {n_rates}  "
          f"simulated seconds per point: {args.duration_s:g}")
    print(f"requests simulated per plan: {simulated / 1e6:.1f} M")
    print(f"plan time: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"({simulated / min(times) / 1e6:.1f} M requests/s)")
    print("ranges:")
    for r in table.ranges:
        print(f"  [{r.min_rps:7.1f}, {r.max_rps:7.1f}) rps  {r.variant:10s} "
              f"{r.replicas}x{r.threads}  eff. accuracy >= {r.effective_accuracy:.3f}")


if __name__ == "__main__":
    main()
