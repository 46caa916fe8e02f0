"""The mixed-precision ResNet pools: every depth in fp32 and int8 (and, with `bf16`, a bf16 run
of each), pruned to the Pareto front.

`build_mixed_resnet_pool(out)` builds the fp32 ResNets in `out/fp32` (`zoo.resnet`), adds a
static int8 copy of each in `out/all` (`zoo.prepare.quantize_pool`, calibrated on seeded noise
or the user's inputs; the int8 figures declared from published ones) and, with `bf16` (the
`openvino` extra), a bf16 run of each (the fp32 figure, declared), and keeps in `out` the
variants on the Pareto front of batch-1 latency on one thread and accuracy
(`zoo.prepare.prune_pool`, on the latencies the quantization measured). Each step reuses what
an earlier run with the same inputs made. On this CPU int8 is faster than bf16 at every depth
(3.5 x fp32 against 2 x), so a bf16 run is kept only where its fp32 accuracy is worth its time
over the int8 copy's 0.2-0.3 points less (BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from gearshift.progress import StepCallback
from gearshift.zoo.prepare import prune_pool, quantize_pool
from gearshift.zoo.resnet import build_resnet_pool


def _stage(progress: StepCallback, stage: int, name: str) -> StepCallback:
    """Report a sub-step's progress as step `stage` of three, named."""
    def report(done: int, total: int, message: str) -> None:
        progress(stage, 3, f"{name}: {message}")
    return report


def build_mixed_resnet_pool(
    out: Path,
    weights: Path | None = None,
    image_size: int = 224,
    metric: Literal["top1", "top5"] = "top1",
    inputs: Path | None = None,
    progress: StepCallback | None = None,
    bf16: bool = False,
) -> Path:
    """Write `out/pool.yaml` (the pruned mixed pool) and return its path; `out/all/quantize.json`
    and `out/prune.json` say what was measured and kept. `bf16`: add bf16 runs."""
    out = Path(out)
    report: StepCallback = progress or (lambda done, total, message: None)
    fp32 = build_resnet_pool(out / "fp32", weights=weights, image_size=image_size,
                             metric=metric, progress=_stage(report, 0, "fp32"))
    both = quantize_pool(fp32, out / "all", inputs=inputs, bf16=bf16,
                         progress=_stage(report, 1, "int8 and bf16" if bf16 else "int8"))
    pruned = prune_pool(both, out, progress=_stage(report, 2, "prune"))
    report(3, 3, f"wrote {pruned}")
    return pruned
