"""Which engine for which precision: batch-1 service time of every ResNet depth in ONNX Runtime
and in OpenVINO, at fp32, int8 (the static QDQ file `zoo quantize` writes) and bf16 (OpenVINO's
precision hint on the fp32 file; ONNX Runtime's CPU provider has none on x86).

Takes the folder `gearshift zoo build resnet-int8 --out DIR` (or resnet-mixed) wrote: DIR/all
holds every depth's fp32 and int8 files. Per depth, the five (engine, file, precision) runs
take turns in rounds (`zoo.evaluate.batch1_latencies_ms`, the runtimes the pool's workers use),
so a burst elsewhere hits all alike; ratios are to ONNX Runtime on the same file.

Run by hand, nothing else running (about 3 minutes):
    .venv/bin/python benchmarks/bench_engines.py out/demo/zoo/resnet-int8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gearshift.runtime.base import ModelFile
from gearshift.zoo.evaluate import batch1_latencies_ms
from gearshift.zoo.spec import load_pool_spec

RUNS = (("ort fp32", "fp32", "onnxruntime", "native"),
        ("ov fp32", "fp32", "openvino", "native"),
        ("ov bf16", "fp32", "openvino", "bf16"),
        ("ort int8", "int8", "onnxruntime", "native"),
        ("ov int8", "int8", "openvino", "native"))


def depth_row(all_dir: Path, depth: str, shape: list[int], runs: int, threads: int
              ) -> dict[str, float]:
    """Median batch-1 ms of each of `RUNS` for ResNet-`depth`."""
    files = {"fp32": all_dir / f"resnet{depth}.onnx", "int8": all_dir / f"resnet{depth}-int8.onnx"}
    models = [ModelFile(files[f], engine, precision)  # type: ignore[arg-type]
              for _, f, engine, precision in RUNS]
    ms = batch1_latencies_ms(models, shape, threads, runs=runs, rounds=5, warmup=3)
    return {name: round(m, 2) for (name, *_), m in zip(RUNS, ms, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mixed", type=Path, help="the folder `zoo build resnet-int8` wrote")
    ap.add_argument("--runs", type=int, default=30, help="runs per model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    spec = load_pool_spec(a.mixed / "all" / "pool.yaml")
    depths = [v.name.removeprefix("resnet") for v in spec.variants
              if v.name.startswith("resnet") and v.name.removeprefix("resnet").isdigit()]
    names = [name for name, *_ in RUNS]
    print(f"| depth | {' | '.join(f'{n} ms' for n in names)} | ov/ort fp32 | ov/ort int8 | "
          "bf16 speed-up |")
    print("|---|" + "---|" * (len(names) + 3))
    rows = {}
    for depth in depths:
        r = rows[depth] = depth_row(a.mixed / "all", depth, spec.input.shape, a.runs, a.threads)
        print(f"| {depth} | {' | '.join(str(r[n]) for n in names)} | "
              f"{r['ov fp32'] / r['ort fp32']:.2f} | {r['ov int8'] / r['ort int8']:.2f} | "
              f"{r['ort fp32'] / r['ov bf16']:.2f}x |", flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
