"""Prepare a pool: add int8 variants (`quantize_pool`) or drop dominated ones (`prune_pool`).

Both read a pool spec and write a new, self-contained one (ONNX files and labels copied) in
another folder, plus a JSON report beside it (`quantize.json`, `prune.json`) saying what was
measured, kept and dropped.

Quantization: static int8 (QDQ, per-channel int8 weights in the reduced 7-bit range, uint8
activations) calibrated on inputs the variant will see. With a labelled data set
(`data="fashion-test"`): images of the matching *train* set, and every variant's accuracy
(fp32 and int8) measured on `data`. Without one: the user's `inputs` (already preprocessed),
else `CALIBRATION_INPUTS` seeded noise inputs, the load generator's own; the int8 variant's
accuracy is then declared: a published figure where one is known (`zoo.resnet.int8_accuracy`
for the ResNets), else the fp32 variant's, its `source` saying it was not measured.
`method="dynamic"` quantizes the weights only, with no calibration. Every row of
quantize.json also says how often the int8 variant's top-1 class agrees with the fp32
variant's, on the evaluation images or on the inputs (`AGREEMENT_INPUTS` seeded noise inputs
if none are given).

With `bf16=True` each variant also gets a bf16 copy `<name>-bf16`: the same ONNX file run by
OpenVINO in bfloat16 (`engine: openvino`, `precision: bf16`; the `openvino` extra), its
latency, accuracy (measured with labelled data, else declared: the fp32 figure, as no
published bf16 figure exists) and top-1 agreement with fp32 in the same row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from gearshift.data.fashion import DEFAULT_FASHION_DIR
from gearshift.errors import SpecError
from gearshift.files import file_sha256
from gearshift.progress import StepCallback as ProgressHook
from gearshift.runtime.base import ModelFile
from gearshift.types import AccuracyKind
from gearshift.zoo.evaluate import (
    batch1_latencies_ms,
    check_image_input,
    load_dataset,
    measured_accuracy,
    model_inputs,
    open_model,
    predict,
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
CALIBRATION_INPUTS = 16  # unlabelled: seeded noise inputs (measured: enough for ResNet-50)
AGREEMENT_INPUTS = 64
INT8_SUFFIX = "-int8"
BF16_SUFFIX = "-bf16"
Method = Literal["static", "dynamic"]


@dataclass(frozen=True)
class QuantizedVariant:
    """One row of quantize.json: latencies in ms at batch 1 on 1 thread; accuracies in [0, 1]
    (None when not measured); `method` is "static" or "dynamic"; `agreement`: the fraction of
    the `agreement_inputs` on which the int8 and fp32 variants' top-1 classes agree, and
    `agreement_on` what those inputs were."""

    variant: str
    int8_variant: str
    method: str
    fp32_ms: float
    int8_ms: float
    fp32_accuracy: float | None
    int8_accuracy: float | None
    agreement: float
    agreement_inputs: int
    agreement_on: str
    bf16_variant: str | None = None  # the bf16 copy's figures, if one was made
    bf16_ms: float | None = None
    bf16_accuracy: float | None = None
    bf16_agreement: float | None = None


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
    """Copy every variant's model to `out_dir/<name>.onnx`, a file that several variants run
    (fp32 and its bf16 run) once, under the first one's name; returns {variant: new path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    copied: dict[Path, str] = {}
    for v in spec.variants:
        src = spec.model_path(v.name)
        if src in copied:
            paths[v.name] = copied[src]
            continue
        paths[v.name] = copied[src] = f"{v.name}.onnx"
        dst = out_dir / paths[v.name]
        if src != dst.resolve() and not _same_copy(src, dst):
            shutil.copy2(src, dst)
    return paths


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete the model files that the pool spec already in `out_dir` (an earlier prune's) names
    and the new one does not: a variant pruned this time leaves no file behind. Only files in
    `out_dir` itself are touched."""
    old = out_dir / "pool.yaml"
    try:
        listed = [v.path for v in load_pool_spec(old, check_models=False).variants]
    except SpecError:  # no earlier pool, or not one of ours: nothing to tidy
        return
    for name in set(listed) - keep:
        path = (out_dir / name).resolve()
        if path.parent == out_dir.resolve() and path.is_file():
            path.unlink()


def _same_copy(src: Path, dst: Path) -> bool:
    """Whether `dst` is a copy of `src` made by `shutil.copy2` (same size and modification
    time), so that preparing a pool again does not copy hundreds of MB anew."""
    if not dst.is_file():
        return False
    a, b = src.stat(), dst.stat()
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


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


def noise_inputs(spec: PoolSpec, count: int, seed: int) -> np.ndarray:
    """`count` seeded standard-normal inputs of the pool's input shape: what the load generator
    sends a float model (`loadgen.payloads.random_payloads`)."""
    if not spec.input.dtype.startswith("float"):
        raise SpecError(f"the pool's input is {spec.input.dtype}: give calibration inputs "
                        "(--inputs) or labelled data to quantize it")
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, *spec.input.shape)).astype(spec.input.dtype)


def user_inputs(spec: PoolSpec, path: Path) -> np.ndarray:
    """Preprocessed inputs from a .npy file of shape (N, *input shape), checked."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read inputs from {path}: {exc}") from None
    want = tuple(spec.input.shape)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or len(x) == 0:
        raise SpecError(f"{path} holds an array of shape {x.shape}; the pool takes "
                        f"(N, {', '.join(map(str, want))}) with N >= 1")
    return np.ascontiguousarray(x, dtype=spec.input.dtype)


def top1_agreements(fp32: ModelFile | Path, others: list[ModelFile], inputs: np.ndarray,
                    threads: int, output: str | None) -> list[float]:
    """For each of `others`, the fraction of `inputs` on which its argmax class is fp32's."""
    want = predict(open_model(fp32, threads), inputs, output)
    return [float(np.mean(predict(open_model(m, threads), inputs, output) == want))
            for m in others]


def _int8_record(fp32: Path, calibration: np.ndarray | None) -> dict[str, str]:
    """What determines an int8 file: the fp32 model, the calibration inputs, the method and
    the quantizer's version."""
    import onnxruntime

    return {"fp32_sha256": file_sha256(fp32),
            "method": "dynamic" if calibration is None else "static",
            "calibration_sha256": ("" if calibration is None
                                   else hashlib.sha256(calibration.tobytes()).hexdigest()),
            "onnxruntime": onnxruntime.__version__}


def _latencies_ms(models: list[ModelFile] | list[Path], spec: PoolSpec) -> list[float]:
    """Batch-1 latency (ms, 1 thread) of each model, with as many runs as fit a few seconds
    per model (300 for a small one, 20 for a ResNet-152)."""
    probe = batch1_latencies_ms(models[:1], spec.input.shape, 1, runs=3, rounds=1, warmup=1,
                                dtype=spec.input.dtype)[0]
    runs = int(min(300, max(20, 3000.0 / max(probe, 1e-3))))
    return batch1_latencies_ms(models, spec.input.shape, 1, runs=runs, rounds=5,
                               warmup=max(2, runs // 10), dtype=spec.input.dtype)


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

    def accuracy(self, model: ModelFile | Path, spec: PoolSpec, threads: int) -> Accuracy:
        value = top1_accuracy(model, self.inputs, self.labels, threads, spec.output)
        return measured_accuracy(value, self.name, len(self.labels))


def _eval_set(spec: PoolSpec, spec_path: Path, data: str, data_dir: Path,
              limit: int | None) -> _EvalSet:
    labelled = load_dataset(data, data_dir, limit)
    check_image_input(spec, labelled, spec_path)
    return _EvalSet(data, model_inputs(labelled.images, spec.input.preprocessing),
                    labelled.labels)


def declared_int8(v: VariantSpec) -> Accuracy:
    """An int8 copy's accuracy when it cannot be measured: a published figure if one is known
    for the variant (`zoo.resnet.int8_accuracy`), else the fp32 variant's, as not measured."""
    from gearshift.zoo.resnet import int8_accuracy

    published = int8_accuracy(v.name, v.accuracy)
    if published is not None:
        return published
    return Accuracy(value=v.accuracy.value, kind=AccuracyKind.DECLARED, metric=v.accuracy.metric,
                    source=f"not measured (no labelled data): the fp32 variant {v.name}'s "
                           f"figure ({v.accuracy.kind.value}: {v.accuracy.source})")


def declared_bf16(v: VariantSpec) -> Accuracy:
    """A bf16 run's accuracy when it cannot be measured: the fp32 variant's figure, declared
    (bfloat16 keeps fp32's exponent range and computes in fp32 accumulators; no published
    ImageNet figure for a bf16 run of these models exists to cite)."""
    return Accuracy(value=v.accuracy.value, kind=AccuracyKind.DECLARED, metric=v.accuracy.metric,
                    source=f"not measured (no labelled data): the fp32 variant {v.name}'s "
                           f"figure ({v.accuracy.kind.value}: {v.accuracy.source}); its bf16 "
                           "run's top-1 agreement with fp32 is in quantize.json")


@dataclass(frozen=True)
class _Agreement:
    """Inputs to compare int8 with fp32 on, and what they are."""

    inputs: np.ndarray
    what: str


def _quantize_variant(spec: PoolSpec, v: VariantSpec, fp32: Path, calibration: np.ndarray | None,
                      evals: _EvalSet | None, agree: _Agreement, threads: int, bf16: bool
                      ) -> tuple[QuantizedVariant, list[VariantSpec]]:
    """Quantize one variant beside its fp32 copy (or reuse the copy a run with the same model
    and calibration made), with a bf16 run of the fp32 file if `bf16`; returns its report row
    and the specs: fp32, int8 (and bf16). Latencies are measured in turns, as one set."""
    int8 = fp32.with_name(f"{v.name}{INT8_SUFFIX}.onnx")
    record = _int8_record(fp32, calibration)
    sidecar = int8.with_name(int8.name + ".json")
    if int8.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()) == record:
        method = str(record["method"])
    else:
        method = quantize_model(fp32, int8, calibration, spec.input.name)
        sidecar.write_text(json.dumps(record, indent=2))
    models = [ModelFile(fp32), ModelFile(int8),
              *([ModelFile(fp32, "openvino", "bf16")] if bf16 else [])]
    ms = _latencies_ms(models, spec)
    if evals is not None:
        accs = [evals.accuracy(m, spec, threads) for m in models]
    else:
        accs = [v.accuracy, declared_int8(v), *([declared_bf16(v)] if bf16 else [])]
    measured = evals is not None
    agreements = top1_agreements(models[0], models[1:], agree.inputs, threads, spec.output)
    row = QuantizedVariant(v.name, v.name + INT8_SUFFIX, method, round(ms[0], 4),
                           round(ms[1], 4), accs[0].value if measured else None,
                           accs[1].value if measured else None, round(agreements[0], 4),
                           len(agree.inputs), agree.what)
    specs = [v.model_copy(update={"path": fp32.name, "accuracy": accs[0]}),
             VariantSpec(name=v.name + INT8_SUFFIX, path=int8.name, accuracy=accs[1],
                         description=f"int8 ({method} quantization, ONNX Runtime) of {v.name}")]
    if bf16:
        row = replace(row, bf16_variant=v.name + BF16_SUFFIX, bf16_ms=round(ms[2], 4),
                      bf16_accuracy=accs[2].value if measured else None,
                      bf16_agreement=round(agreements[1], 4))
        specs.append(VariantSpec(name=v.name + BF16_SUFFIX, path=fp32.name, accuracy=accs[2],
                                 description=f"bf16 (OpenVINO) run of {v.name}",
                                 engine="openvino", precision="bf16"))
    return row, specs


def quantize_pool(
    spec_path: Path,
    out_dir: Path,
    data: str | None = None,
    progress: ProgressHook | None = None,
    data_dir: Path = DEFAULT_FASHION_DIR,
    limit: int | None = None,
    threads: int = 2,
    inputs: Path | None = None,
    method: Method = "static",
    bf16: bool = False,
) -> Path:
    """Write `out_dir/pool.yaml` with every fp32 variant, its int8 copy `<name>-int8` and, with
    `bf16`, its bf16 run `<name>-bf16`, and `out_dir/quantize.json` (one QuantizedVariant per
    variant); returns the spec's path.

    `data`: a labelled data set (see module doc) or None; `limit`: evaluate on its first
    `limit` images; `threads`: ONNX Runtime threads for the accuracy and agreement runs;
    `inputs`: a .npy of preprocessed inputs to calibrate on (the first `CALIBRATION_INPUTS`)
    and to compare int8 with fp32 on (all), when there is no labelled data; `method`: static
    or dynamic. Batch-1 latency is always measured on 1 thread."""
    spec_path, out_dir, report = Path(spec_path), Path(out_dir), progress or _no_progress
    spec = load_pool_spec(spec_path)
    if data and inputs is not None:
        raise SpecError("give labelled data or inputs, not both: labelled data brings its own")
    evals = _eval_set(spec, spec_path, data, data_dir, limit) if data else None
    given = user_inputs(spec, inputs) if inputs is not None else None
    if evals is not None:
        agree = _Agreement(evals.inputs, f"{evals.name} ({len(evals.inputs)} images)")
    elif given is not None:
        agree = _Agreement(given, f"{inputs} ({len(given)} inputs)")
    else:
        agree = _Agreement(noise_inputs(spec, AGREEMENT_INPUTS, seed=1),
                           f"{AGREEMENT_INPUTS} seeded noise inputs")
    calibration: np.ndarray | None = None
    if method == "static":
        calibration = (_calibration_inputs(spec, data, data_dir) if data
                       else given[:CALIBRATION_INPUTS] if given is not None
                       else noise_inputs(spec, CALIBRATION_INPUTS, seed=0))
    paths = _copy_pool_files(spec, out_dir)
    rows, variants = [], []
    for i, v in enumerate(spec.variants):
        report(i, len(spec.variants), f"{v.name}: quantizing")
        row, specs = _quantize_variant(spec, v, out_dir / paths[v.name], calibration, evals,
                                       agree, threads, bf16)
        rows.append(row)
        variants += specs
    (out_dir / "quantize.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    report(len(spec.variants), len(spec.variants), f"wrote {out_dir / 'pool.yaml'}")
    return _write_pool(spec, variants, out_dir)


# --- pruning --------------------------------------------------------------------------------


def _quantized_latencies(spec_path: Path) -> dict[str, float]:
    """{variant: batch-1 ms} from the `quantize.json` beside `spec_path`, if there is one."""
    report = Path(spec_path).parent / "quantize.json"
    if not report.is_file():
        return {}
    rows = json.loads(report.read_text())
    return {**{r["variant"]: r["fp32_ms"] for r in rows},
            **{r["int8_variant"]: r["int8_ms"] for r in rows},
            **{r["bf16_variant"]: r["bf16_ms"] for r in rows if r.get("bf16_variant")}}


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

    `latency_ms`: batch-1 latency per variant in ms; by default those a `quantize.json`
    beside the spec holds (the quantization measured them); variants missing from both are
    measured on 1 thread (median of up to 300 runs, taken in turns)."""
    spec, out_dir, report = load_pool_spec(spec_path), Path(out_dir), progress or _no_progress
    names = spec.variant_names()
    given = (dict(latency_ms) if latency_ms is not None else
             {n: ms for n, ms in _quantized_latencies(spec_path).items() if n in names})
    unknown = sorted(set(given) - set(spec.variant_names()))
    if unknown:
        raise SpecError(f"latency given for variants not in {spec_path}: {', '.join(unknown)}")
    todo = [n for n in spec.variant_names() if n not in given]
    report(0, len(spec.variants), f"measuring batch-1 latency of {len(todo)} variants")
    measured = _latencies_ms([spec.model_file(n) for n in todo], spec) if todo else []
    lat = {n: given[n] if n in given else measured[todo.index(n)] for n in spec.variant_names()}
    decisions = pareto_decisions(lat, {n: spec.accuracy_of(n) for n in lat})
    kept = [d.variant for d in decisions if d.kept]
    kept_spec = spec.model_copy(update={"variants": [spec.variant(n) for n in kept]})
    paths = _copy_pool_files(kept_spec, out_dir)
    if out_dir.resolve() != spec.root.resolve():
        _remove_stale(out_dir, set(paths.values()))
    variants = [spec.variant(n).model_copy(update={"path": paths[n]}) for n in kept]
    (out_dir / "prune.json").write_text(json.dumps([asdict(d) for d in decisions], indent=2))
    report(len(spec.variants), len(spec.variants), f"kept {len(kept)} of {len(spec.variants)}")
    return _write_pool(spec, variants, out_dir)
