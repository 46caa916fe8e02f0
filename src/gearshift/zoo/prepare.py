"""Prepare a pool: add int8 variants (`quantize_pool`) or drop dominated ones (`prune_pool`).

Both read a pool spec and write a new, self-contained one (ONNX files and labels copied) in
another folder, plus a JSON report beside it (`quantize.json`, `prune.json`) saying what was
measured, kept and dropped.

Quantization: with a labelled data set (`data="fashion-test"`), static int8 quantization
(QDQ, per-channel int8 weights in the reduced 7-bit range, uint8 activations) calibrated on
images of the matching *train* set, and every variant's accuracy (fp32 and int8) measured on
`data`. Without one, dynamic int8 quantization (weights only, no calibration data needed); the
int8 variant then keeps the fp32 variant's figure as kind "declared", and its `source` says it
was not measured.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gearshift.data.fashion import DEFAULT_FASHION_DIR
from gearshift.errors import SpecError
from gearshift.progress import StepCallback as ProgressHook
from gearshift.types import AccuracyKind
from gearshift.zoo.evaluate import (
    batch1_latencies_ms,
    check_image_input,
    load_dataset,
    measured_accuracy,
    model_inputs,
    top1_accuracy,
)
from gearshift.zoo.spec import (
    Accuracy,
    PoolSpec,
    VariantSpec,
    dump_pool_spec,
    load_pool_spec,
    parse_pool_spec,
)

CALIBRATION_SET = {"fashion-test": "fashion-train"}  # never calibrate on the evaluation set
CALIBRATION_IMAGES = 512
INT8_SUFFIX = "-int8"


@dataclass(frozen=True)
class QuantizedVariant:
    """One row of quantize.json: latencies in ms at batch 1 on 1 thread; accuracies in [0, 1]
    (None when not measured); `method` is "static" or "dynamic"."""

    variant: str
    int8_variant: str
    method: str
    fp32_ms: float
    int8_ms: float
    fp32_accuracy: float | None
    int8_accuracy: float | None


@dataclass(frozen=True)
class PruneDecision:
    """One row of prune.json: a variant's batch-1 latency (ms), accuracy, and the verdict."""

    variant: str
    latency_ms: float
    accuracy: float
    kept: bool
    reason: str


def _no_progress(done: int, total: int, message: str) -> None:
    """The default progress hook: report nothing."""


def _copy_pool_files(spec: PoolSpec, out_dir: Path) -> dict[str, str]:
    """Copy every variant's model to `out_dir/<name>.onnx`; returns {variant: new path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for v in spec.variants:
        paths[v.name] = f"{v.name}.onnx"
        if spec.model_path(v.name) != (out_dir / paths[v.name]).resolve():
            shutil.copyfile(spec.model_path(v.name), out_dir / paths[v.name])
    return paths


def _copy_labels(spec: PoolSpec, out_dir: Path) -> str | None:
    """Copy the labels file, if the spec names one that exists; returns its new path."""
    if not spec.labels or not (spec.root / spec.labels).is_file():
        return None
    src, dst = (spec.root / spec.labels).resolve(), out_dir / Path(spec.labels).name
    if src != dst.resolve():
        shutil.copyfile(src, dst)
    return dst.name


def _write_pool(spec: PoolSpec, variants: list[VariantSpec], out_dir: Path) -> Path:
    """Write `out_dir/pool.yaml` (spec with `variants`), then load it back to validate."""
    labels = _copy_labels(spec, out_dir)
    data = {**spec.model_dump(mode="json"), "labels": labels,
            "variants": [v.model_dump(mode="json") for v in variants]}
    new = parse_pool_spec(data, out_dir.resolve(), out_dir / "pool.yaml")
    dump_pool_spec(new, out_dir / "pool.yaml")
    load_pool_spec(out_dir / "pool.yaml")
    return out_dir / "pool.yaml"


# --- quantization ---------------------------------------------------------------------------


def _calibration_batches(inputs: np.ndarray, input_name: str, batch: int = 32) -> object:
    """An onnxruntime CalibrationDataReader over `inputs` (already preprocessed)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no stubs
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter(
                [{input_name: inputs[s:s + batch]} for s in range(0, len(inputs), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    return Reader()


def quantize_model(src: Path, dst: Path, calibration: np.ndarray | None, input_name: str) -> str:
    """Write an int8 copy of `src` to `dst`: static QDQ (per-channel) calibrated on
    `calibration` if given, else dynamic. Returns the method used."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # reduce_range: 7-bit weights. With full-range int8 weights, MLAS's u8 x s8 kernels
    # saturate int16 partial sums on this CPU: fnet-l lost 3 points of accuracy (0.927 ->
    # 0.896 on 3000 test images); with reduce_range it kept 0.929 at the same speed. s8
    # activations were as accurate but about 2x slower than fp32.
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        if calibration is None:
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, reduce_range=True)
            return "dynamic"
        quantize_static(str(pre), str(dst), _calibration_batches(calibration, input_name),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        return "static"


def _calibration_inputs(spec: PoolSpec, data: str, data_dir: Path) -> np.ndarray:
    if data not in CALIBRATION_SET:
        raise SpecError(f"no calibration set for data set {data!r}; use "
                        f"{', '.join(CALIBRATION_SET)} or no data (dynamic quantization)")
    calib = load_dataset(CALIBRATION_SET[data], data_dir)
    pick = np.random.default_rng(0).choice(len(calib), CALIBRATION_IMAGES, replace=False)
    return model_inputs(calib.images[np.sort(pick)], spec.input.preprocessing)


@dataclass(frozen=True)
class _EvalSet:
    """Preprocessed labelled inputs of data set `name` for accuracy runs."""

    name: str
    inputs: np.ndarray
    labels: np.ndarray

    def accuracy(self, model: Path, spec: PoolSpec, threads: int) -> Accuracy:
        value = top1_accuracy(model, self.inputs, self.labels, threads, spec.output)
        return measured_accuracy(value, self.name, len(self.labels))


def _eval_set(spec: PoolSpec, spec_path: Path, data: str, data_dir: Path,
              limit: int | None) -> _EvalSet:
    labelled = load_dataset(data, data_dir, limit)
    check_image_input(spec, labelled, spec_path)
    return _EvalSet(data, model_inputs(labelled.images, spec.input.preprocessing),
                    labelled.labels)


def _unmeasured_int8(v: VariantSpec) -> Accuracy:
    return Accuracy(value=v.accuracy.value, kind=AccuracyKind.DECLARED, metric=v.accuracy.metric,
                    source=f"not measured (no labelled data): the fp32 variant {v.name}'s "
                           f"figure ({v.accuracy.kind.value}: {v.accuracy.source})")


def _quantize_variant(spec: PoolSpec, v: VariantSpec, fp32: Path, calibration: np.ndarray | None,
                      evals: _EvalSet | None, threads: int
                      ) -> tuple[QuantizedVariant, VariantSpec, VariantSpec]:
    """Quantize one variant beside its fp32 copy; returns its report row and the two specs."""
    int8 = fp32.with_name(f"{v.name}{INT8_SUFFIX}.onnx")
    method = quantize_model(fp32, int8, calibration, spec.input.name)
    ms = batch1_latencies_ms([fp32, int8], spec.input.shape, 1, dtype=spec.input.dtype)
    if evals is not None:
        acc_fp32, acc_int8 = (evals.accuracy(p, spec, threads) for p in (fp32, int8))
    else:
        acc_fp32, acc_int8 = v.accuracy, _unmeasured_int8(v)
    measured = evals is not None
    row = QuantizedVariant(v.name, v.name + INT8_SUFFIX, method, round(ms[0], 4),
                           round(ms[1], 4), acc_fp32.value if measured else None,
                           acc_int8.value if measured else None)
    fp32_spec = v.model_copy(update={"path": fp32.name, "accuracy": acc_fp32})
    int8_spec = VariantSpec(name=v.name + INT8_SUFFIX, path=int8.name, accuracy=acc_int8,
                            description=f"int8 ({method} quantization, ONNX Runtime) of {v.name}")
    return row, fp32_spec, int8_spec


def quantize_pool(
    spec_path: Path,
    out_dir: Path,
    data: str | None = None,
    progress: ProgressHook | None = None,
    data_dir: Path = DEFAULT_FASHION_DIR,
    limit: int | None = None,
    threads: int = 2,
) -> Path:
    """Write `out_dir/pool.yaml` with every fp32 variant and its int8 copy `<name>-int8`, and
    `out_dir/quantize.json` (one QuantizedVariant per variant); returns the spec's path.

    `data`: a labelled data set (see module doc) or None; `limit`: evaluate on its first
    `limit` images; `threads`: ONNX Runtime threads for the accuracy runs. Batch-1 latency is
    always measured on 1 thread."""
    spec_path, out_dir, report = Path(spec_path), Path(out_dir), progress or _no_progress
    spec = load_pool_spec(spec_path)
    evals = _eval_set(spec, spec_path, data, data_dir, limit) if data else None
    calibration = _calibration_inputs(spec, data, data_dir) if data else None
    paths = _copy_pool_files(spec, out_dir)
    rows, variants = [], []
    for i, v in enumerate(spec.variants):
        report(i, len(spec.variants), f"{v.name}: quantizing")
        row, fp32_spec, int8_spec = _quantize_variant(
            spec, v, out_dir / paths[v.name], calibration, evals, threads)
        rows.append(row)
        variants += [fp32_spec, int8_spec]
    (out_dir / "quantize.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    report(len(spec.variants), len(spec.variants), f"wrote {out_dir / 'pool.yaml'}")
    return _write_pool(spec, variants, out_dir)


# --- pruning --------------------------------------------------------------------------------


def pareto_decisions(latency_ms: dict[str, float],
                     accuracy: dict[str, float]) -> list[PruneDecision]:
    """Keep a variant unless another is at least as fast and at least as accurate, and strictly
    better in one of the two (a dominated variant is never the best choice at any load or
    deadline). Ties in both keep both. Order follows `latency_ms`."""
    decisions = []
    for name, ms in latency_ms.items():
        acc = accuracy[name]
        by = [o for o, o_ms in latency_ms.items() if o != name and o_ms <= ms
              and accuracy[o] >= acc and (o_ms < ms or accuracy[o] > acc)]
        if by:
            best = max(by, key=lambda o: (accuracy[o], -latency_ms[o]))
            reason = (f"dominated by {best} ({latency_ms[best]:.3f} ms, accuracy "
                      f"{accuracy[best]:.4f}) vs {ms:.3f} ms, {acc:.4f}: slower and no more "
                      "accurate")
        else:
            reason = "on the accuracy-latency Pareto front"
        decisions.append(PruneDecision(name, round(ms, 4), acc, not by, reason))
    return decisions


def prune_pool(spec_path: Path, out_dir: Path, latency_ms: dict[str, float] | None = None,
               progress: ProgressHook | None = None) -> Path:
    """Write `out_dir/pool.yaml` with only the Pareto-optimal variants (files copied) and
    `out_dir/prune.json` (one PruneDecision per variant); returns the spec's path.

    `latency_ms`: batch-1 latency per variant in ms; variants missing from it are measured on
    1 thread (median of 300 runs, taken in turns)."""
    spec, out_dir, report = load_pool_spec(spec_path), Path(out_dir), progress or _no_progress
    given = dict(latency_ms or {})
    unknown = sorted(set(given) - set(spec.variant_names()))
    if unknown:
        raise SpecError(f"latency given for variants not in {spec_path}: {', '.join(unknown)}")
    todo = [n for n in spec.variant_names() if n not in given]
    report(0, len(spec.variants), f"measuring batch-1 latency of {len(todo)} variants")
    measured = batch1_latencies_ms([spec.model_path(n) for n in todo], spec.input.shape, 1,
                                   dtype=spec.input.dtype) if todo else []
    lat = {n: given[n] if n in given else measured[todo.index(n)] for n in spec.variant_names()}
    decisions = pareto_decisions(lat, {n: spec.accuracy_of(n) for n in lat})
    kept = [d.variant for d in decisions if d.kept]
    kept_spec = spec.model_copy(update={"variants": [spec.variant(n) for n in kept]})
    paths = _copy_pool_files(kept_spec, out_dir)
    variants = [spec.variant(n).model_copy(update={"path": paths[n]}) for n in kept]
    (out_dir / "prune.json").write_text(json.dumps([asdict(d) for d in decisions], indent=2))
    report(len(spec.variants), len(spec.variants), f"kept {len(kept)} of {len(spec.variants)}")
    return _write_pool(spec, variants, out_dir)
