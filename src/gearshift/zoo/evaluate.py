"""Measure a pool's accuracy on labelled data, each variant in its own engine and precision, and
record it in the spec.

`evaluate_pool` runs every variant over a labelled data set (batched), applies the spec's
declared preprocessing to the data set's [0, 1] images, and rewrites the spec with each
variant's accuracy as kind "measured", metric "top1", naming the data set in `source`.
`batch1_latency_ms` is the median single-image latency of one model at a fixed thread count.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from gearshift.data.fashion import DEFAULT_FASHION_DIR, LabelledImages, load_fashion
from gearshift.errors import SpecError
from gearshift.progress import StepCallback as ProgressHook
from gearshift.runtime.base import ModelFile, Runtime, RuntimeSettings, load_runtime
from gearshift.types import AccuracyKind
from gearshift.zoo.spec import Accuracy, PoolSpec, Preprocessing, dump_pool_spec, load_pool_spec

DATASETS: dict[str, tuple[str, str]] = {
    # name -> (Fashion-MNIST split, description used in accuracy sources)
    "fashion-test": ("test", "Fashion-MNIST test set"),
    "fashion-train": ("train", "Fashion-MNIST train set"),
}
BATCH = 500


def load_dataset(name: str, data_dir: Path = DEFAULT_FASHION_DIR,
                 limit: int | None = None) -> LabelledImages:
    """The labelled images of data set `name` (see DATASETS), the first `limit` if given."""
    if name not in DATASETS:
        raise SpecError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    data = load_fashion(DATASETS[name][0], data_dir)  # type: ignore[arg-type]
    return data if limit is None else data.head(limit)


def source_for(name: str, count: int) -> str:
    """The accuracy `source` text for `count` images of data set `name`."""
    return f"{DATASETS[name][1]}, {count} images"


def model_inputs(images01: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Images in [0, 1] (that is, pixel / 255) -> the input the spec's preprocessing declares.

    Raises SpecError if the spec declares a different scale than 1/255 (the data set's own)."""
    if not math.isclose(prep.scale, 1 / 255, rel_tol=1e-3):
        raise SpecError(f"the pool declares input scale {prep.scale}; the labelled data sets "
                        "hold 8-bit images, scaled here by 1/255, so they cannot evaluate it")
    x = images01.astype(np.float32, copy=True)
    channels = x.shape[1]
    for field in ("mean", "std"):
        values = getattr(prep, field)
        if values is not None and len(values) not in (1, channels):
            raise SpecError(f"input.preprocessing.{field} has {len(values)} values for "
                            f"{channels}-channel images; give 1 or {channels}")
    if prep.mean is not None:
        x -= np.asarray(prep.mean, np.float32).reshape(1, -1, 1, 1)
    if prep.std is not None:
        x /= np.asarray(prep.std, np.float32).reshape(1, -1, 1, 1)
    return x


def open_model(model: ModelFile | Path, threads: int) -> Runtime:
    """One model loaded the way gearshift serves it (its engine and precision, explicit
    threads, no spinning), as the runtime's only variant."""
    return load_runtime({"model": model}, RuntimeSettings(threads=threads))


def _feed(runtime: Runtime, x: np.ndarray) -> dict[str, np.ndarray]:
    return {runtime.input_names("model")[0]: x}


def predict(runtime: Runtime, inputs: np.ndarray, output: str | None = None,
            batch: int = BATCH) -> np.ndarray:
    """Argmax class of each item of `inputs` (N, ...) by `open_model`'s runtime, run `batch`
    items at a time."""
    out_name = output or runtime.output_names("model")[0]
    preds = [runtime.infer("model", _feed(runtime, inputs[s:s + batch]))[out_name].argmax(axis=1)
             for s in range(0, len(inputs), batch)]
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def top1_accuracy(model: ModelFile | Path, inputs: np.ndarray, labels: np.ndarray,
                  threads: int = 2, output: str | None = None) -> float:
    """Fraction of `inputs` (already preprocessed) whose argmax equals `labels`."""
    if len(inputs) == 0:
        raise SpecError("no labelled images to evaluate on")
    preds = predict(open_model(model, threads), inputs, output)
    return float(np.mean(preds == labels))


def batch1_latencies_ms(models: list[ModelFile] | list[Path], input_shape: list[int],
                        threads: int = 1, runs: int = 300, rounds: int = 5, warmup: int = 30,
                        dtype: str = "float32") -> list[float]:
    """Median wall time in ms of one single-item call (Python included) for each model, in its
    engine and precision at `threads` threads, on seeded noise. The models take turns in
    `rounds` blocks of `runs / rounds` runs, so a burst of load elsewhere on the machine hits
    all of them alike and their ratios stay fair."""
    runtimes = [open_model(m, threads) for m in models]
    x = np.random.default_rng(0).random((1, *input_shape)).astype(dtype)
    feeds = [_feed(r, x) for r in runtimes]
    for runtime, feed in zip(runtimes, feeds, strict=True):
        for _ in range(warmup):
            runtime.infer("model", feed)
    per_round = max(1, runs // rounds)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, (runtime, feed) in enumerate(zip(runtimes, feeds, strict=True)):
            for _ in range(per_round):
                t0 = time.perf_counter()
                runtime.infer("model", feed)
                times[i].append(time.perf_counter() - t0)
    return [float(np.median(t) * 1e3) for t in times]


def batch1_latency_ms(path: Path, input_shape: list[int], threads: int = 1, runs: int = 300,
                      warmup: int = 30, dtype: str = "float32") -> float:
    """Median single-item latency in ms of one model (see `batch1_latencies_ms`)."""
    return batch1_latencies_ms([path], input_shape, threads, runs, 1, warmup, dtype)[0]


def measured_accuracy(value: float, data: str, count: int) -> Accuracy:
    return Accuracy(value=round(value, 6), kind=AccuracyKind.MEASURED, metric="top1",
                    source=source_for(data, count))


def with_accuracies(spec: PoolSpec, accuracies: dict[str, Accuracy]) -> PoolSpec:
    """A copy of `spec` whose named variants carry the new accuracies."""
    variants = [v.model_copy(update={"accuracy": accuracies[v.name]})
                if v.name in accuracies else v for v in spec.variants]
    return spec.model_copy(update={"variants": variants})


def check_image_input(spec: PoolSpec, data: LabelledImages, where: Path) -> None:
    if list(data.images.shape[1:]) != spec.input.shape:
        raise SpecError(f"{where}: input.shape {spec.input.shape} does not match the data set's "
                        f"images {list(data.images.shape[1:])}; evaluate a pool built for it")


def evaluate_pool(
    spec_path: Path,
    data: str = "fashion-test",
    threads: int = 2,
    progress: ProgressHook | None = None,
    data_dir: Path = DEFAULT_FASHION_DIR,
    limit: int | None = None,
) -> dict[str, float]:
    """Measure every variant's top-1 accuracy on data set `data` (the first `limit` images if
    given), each in its engine and precision at `threads` threads; rewrite `spec_path` with the figures as
    kind "measured"; returns {variant: accuracy in [0, 1]}."""
    spec_path = Path(spec_path)
    spec = load_pool_spec(spec_path)
    labelled = load_dataset(data, data_dir, limit)
    check_image_input(spec, labelled, spec_path)
    inputs = model_inputs(labelled.images, spec.input.preprocessing)
    results: dict[str, float] = {}
    for i, name in enumerate(spec.variant_names()):
        if progress:
            progress(i, len(spec.variants), f"{name}: {len(labelled)} images")
        results[name] = top1_accuracy(spec.model_file(name), inputs, labelled.labels, threads,
                                      spec.output)
    new = {n: measured_accuracy(a, data, len(labelled)) for n, a in results.items()}
    dump_pool_spec(with_accuracies(spec, new), spec_path)
    if progress:
        progress(len(spec.variants), len(spec.variants), f"wrote {spec_path}")
    return results
