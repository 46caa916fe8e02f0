"""What a Fashion-MNIST family whose variants, not the serving path, decide who is on time would
cost to train on this machine.

For the paper's ResNet-18 and ResNet-34 shapes adapted to 1x28x28 (a 3x3 stride-1 stem, four
stages of BasicBlocks, width 16-64 at the stem) and the shipped `fnet-l`, it measures the
ONNX Runtime service time at batch 1 on one thread (what a replica pays per request) and torch's
training rate at batch 128 on two threads (SGD, random data: the rate does not depend on it),
and prints the minutes one epoch of the 60,000 training images would take.

Run by hand (about 3 minutes, nothing else running):
    .venv/bin/python benchmarks/bench_family_cost.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gearshift.zoo.fashion import FAMILY, FashionNetConfig, export_onnx, fashion_net

TRAIN_IMAGES = 60_000


def resnet_shape(name: str, width: int, blocks: tuple[int, ...]) -> FashionNetConfig:
    """The paper's ResNet stage layout at 28x28: stem `width`, stage widths doubling."""
    return FashionNetConfig(name, width, 1,
                            tuple((width * 2 ** i, n) for i, n in enumerate(blocks)),
                            epochs=1, augment=False)


CANDIDATES = (
    next(c for c in FAMILY if c.name == "fnet-l"),
    resnet_shape("resnet18-w16", 16, (2, 2, 2, 2)),
    resnet_shape("resnet18-w32", 32, (2, 2, 2, 2)),
    resnet_shape("resnet18-w64", 64, (2, 2, 2, 2)),
    resnet_shape("resnet34-w64", 64, (3, 4, 6, 3)),
)


def service_ms(cfg: FashionNetConfig, folder: Path, runs: int) -> float:
    """Median batch-1 ONNX Runtime latency (ms), one intra-op thread, no spinning."""
    path = folder / f"{cfg.name}.onnx"
    export_onnx(fashion_net(cfg), path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    for _ in range(5):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def training_rate(cfg: FashionNetConfig, steps: int) -> float:
    """Images per second of SGD steps at batch 128 on two threads (after two warm-up steps)."""
    import torch

    torch.set_num_threads(2)
    model = fashion_net(cfg).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    for k in range(steps + 2):
        if k == 2:
            t0 = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return steps * 128 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="timed inferences per variant")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps per variant")
    args = ap.parse_args()
    print("| variant | service ms (ORT, batch 1, 1 thread) | training img/s (batch 128, "
          "2 threads) | minutes per epoch of 60,000 |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in CANDIDATES:
            ms = service_ms(cfg, Path(tmp), args.runs)
            rate = training_rate(cfg, args.steps)
            print(f"| {cfg.name} | {ms:.2f} | {rate:.0f} | {TRAIN_IMAGES / rate / 60:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
