"""Typer commands for the Fashion-MNIST family and pool preparation (registered by cli.py):

`gearshift evaluate POOL.yaml --data fashion-test`, `gearshift zoo quantize POOL.yaml --out DIR`,
`gearshift zoo prune POOL.yaml --out DIR`, `gearshift zoo build fashion --out DIR [--retrain]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gearshift.data.fashion import DEFAULT_FASHION_DIR
from gearshift.errors import GearshiftError

console = Console(stderr=True)
out = Console()
TEXT_COLUMNS = ("method", "verdict", "why")
DataDir = Annotated[Path, typer.Option(help="folder with the Fashion-MNIST IDX .gz files")]


def _fail(exc: GearshiftError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc.message}")
    return typer.Exit(code=2)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 or col in TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def evaluate(
    spec_path: Annotated[Path, typer.Argument(help="pool.yaml (rewritten with the accuracies)")],
    data: Annotated[str, typer.Option(help="labelled data set: fashion-test")] = "fashion-test",
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads for the accuracy runs")] = 2,
    limit: Annotated[int | None, typer.Option(help="use only the first N images")] = None,
    data_dir: DataDir = DEFAULT_FASHION_DIR,
) -> None:
    """Measure every variant's top-1 accuracy on labelled data and record it in the spec."""
    from gearshift.progress import step_progress
    from gearshift.zoo.evaluate import batch1_latencies_ms, evaluate_pool
    from gearshift.zoo.spec import load_pool_spec

    try:
        with step_progress(console, "evaluating") as progress:
            accuracy = evaluate_pool(spec_path, data, threads, progress, data_dir, limit)
        spec = load_pool_spec(spec_path)
        names = list(accuracy)
        ms = dict(zip(names, batch1_latencies_ms([spec.model_file(n) for n in names],
                                                 spec.input.shape, 1, dtype=spec.input.dtype),
                      strict=True))
    except GearshiftError as exc:
        raise _fail(exc) from None
    rows = [[n, f"{a:.4f}", f"{ms[n]:.3f}"] for n, a in accuracy.items()]
    source = spec.variants[0].accuracy.source
    out.print(_table(f"{spec.application}: {source}", ["variant", "accuracy",
                                                       "batch-1 ms (1 thread)"], rows))
    out.print(f"accuracies written to [bold]{spec_path}[/]")


def _quantize_data(spec_path: Path, data: str) -> str | None:
    """`auto` picks fashion-test for a Fashion-MNIST pool, else no data; `none` is None."""
    if data == "none":
        return None
    if data != "auto":
        return data
    from gearshift.zoo.spec import load_pool_spec

    spec = load_pool_spec(spec_path, check_models=False)
    return "fashion-test" if spec.input.shape == [1, 28, 28] else None


def zoo_quantize(
    spec_path: Annotated[Path, typer.Argument(help="pool.yaml to quantize")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the new pool")],
    data: Annotated[str, typer.Option(
        help="labelled data to calibrate and measure on: fashion-test, none, or auto "
             "(fashion-test for 1x28x28 pools)")] = "auto",
    limit: Annotated[int | None, typer.Option(help="measure on the first N images")] = None,
    data_dir: DataDir = DEFAULT_FASHION_DIR,
    inputs: Annotated[Path | None, typer.Option(
        help="without labelled data: a .npy of preprocessed inputs (N x input shape) to "
             "calibrate on and to compare int8 with fp32 on (default: seeded noise, as the "
             "load generator sends)")] = None,
    method: Annotated[str, typer.Option(
        help="static (calibrated activations) or dynamic (weights only)")] = "static",
    bf16: Annotated[bool, typer.Option(
        help="also a bf16 run of every variant (OpenVINO; pip install 'gearshift[openvino]')")
    ] = False,
) -> None:
    """Add an int8 copy of every variant: static QDQ, calibrated on labelled data's train set,
    on --inputs, or on seeded noise; accuracy measured with labelled data, else declared.
    With --bf16 also a bf16 run of each (the same file, OpenVINO in bfloat16)."""
    from gearshift.progress import step_progress
    from gearshift.zoo.prepare import quantize_pool

    if method not in ("static", "dynamic"):
        raise _fail(GearshiftError(f"--method must be static or dynamic, got {method!r}"))
    try:
        chosen = _quantize_data(spec_path, data)
        with step_progress(console, "quantizing") as progress:
            path = quantize_pool(spec_path, out_dir, chosen, progress, data_dir, limit,
                                 inputs=inputs,
                                 method="static" if method == "static" else "dynamic",
                                 bf16=bf16)
    except GearshiftError as exc:
        raise _fail(exc) from None
    report = json.loads((out_dir / "quantize.json").read_text())
    for kind, method_col in (("int8", True), *((("bf16", False),) if bf16 else ())):
        other, agrees = ("int8", "agreement") if kind == "int8" else ("bf16", "bf16_agreement")
        rows = [[r["variant"], *([r["method"]] if method_col else []), f"{r['fp32_ms']:.3f}",
                 f"{r[f'{other}_ms']:.3f}", f"{r['fp32_ms'] / r[f'{other}_ms']:.2f}x",
                 _pct(r["fp32_accuracy"]), _pct(r[f"{other}_accuracy"]), _pct(r[agrees])]
                for r in report]
        cols = ["variant", *(["method"] if method_col else []), "fp32 ms", f"{kind} ms",
                "speed-up", "fp32 acc", f"{kind} acc", "top-1 agrees"]
        engine = "ONNX Runtime" if kind == "int8" else "OpenVINO"
        out.print(_table(f"{kind}, {engine} (batch 1, 1 thread)", cols, rows))
    if report:
        out.print(f"agreement with fp32 on {report[0]['agreement_on']}")
    out.print(f"pool spec written to [bold]{path}[/]")


def zoo_prune(
    spec_path: Annotated[Path, typer.Argument(help="pool.yaml to prune")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the pruned pool")],
) -> None:
    """Keep only the variants on the accuracy-latency Pareto front (batch 1, 1 thread)."""
    from gearshift.progress import step_progress
    from gearshift.zoo.prepare import prune_pool

    try:
        with step_progress(console, "measuring") as progress:
            path = prune_pool(spec_path, out_dir, progress=progress)
    except GearshiftError as exc:
        raise _fail(exc) from None
    rows = [[d["variant"], f"{d['latency_ms']:.3f}", f"{d['accuracy']:.4f}",
             "kept" if d["kept"] else "dropped", d["reason"]]
            for d in json.loads((out_dir / "prune.json").read_text())]
    out.print(_table("Pareto pruning", ["variant", "batch-1 ms", "accuracy", "verdict", "why"], rows))
    out.print(f"pool spec written to [bold]{path}[/]")
