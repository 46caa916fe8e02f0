"""The fashion family: ResNet-style CNNs of growing depth and width trained on Fashion-MNIST.

Every variant is a stem (3x3 conv, BatchNorm, ReLU), then stages of BasicBlocks whose first
block halves the resolution, global average pooling and a linear layer to 10 logits. Input:
(batch, 1, 28, 28) float32, normalised as `(pixel / 255 - 0.2860) / 0.3530`.

The trained ONNX files and `recipe.json` (how they were trained and what they scored on the
test set) ship in `fashion_models/`. `build_fashion_pool(out)` copies them and writes
`out/pool.yaml`; `build_fashion_pool(out, retrain=True)` trains the family from scratch with the
recipe (this is how the shipped files were made; minutes of CPU, never run by tests).

Torch is imported inside functions only, so copying the shipped pool needs no torch.
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

import numpy as np

from gearshift.data.fashion import (
    CLASSES,
    DEFAULT_FASHION_DIR,
    MEAN,
    SCALE,
    STD,
    LabelledImages,
    load_fashion,
)
from gearshift.errors import GearshiftError, SpecError
from gearshift.files import file_sha256
from gearshift.progress import StepCallback as ProgressHook
from gearshift.types import JSON, AccuracyKind
from gearshift.zoo.spec import (
    Accuracy,
    InputSpec,
    PoolSpec,
    Preprocessing,
    VariantSpec,
    dump_pool_spec,
)

if TYPE_CHECKING:
    from torch import nn

    from gearshift.zoo.fashion_train import TrainRecipe


SHIPPED_DIR = Path(__file__).parent / "fashion_models"
APPLICATION = "fashion-mnist"
INPUT_NAME, OUTPUT_NAME, OPSET = "input", "logits", 17
CHECK_ATOL = 1e-4
DEADLINE_MS = 10.0
LABELS_FILE = "classes.txt"
RECIPE_FILE = "recipe.json"
TEST_SOURCE = "Fashion-MNIST test set, 10000 images"


class ExportCheckFailed(GearshiftError):
    """The exported ONNX model's logits differ from torch's on the same input."""


@dataclass(frozen=True)
class FashionNetConfig:
    """One variant. `stages`: (width, blocks) per stage; each stage's first block has stride 2.
    `epochs` and `augment` (random crop + flip) are its share of the training recipe."""

    name: str
    stem_width: int
    stem_stride: int
    stages: tuple[tuple[int, int], ...]
    epochs: int
    augment: bool

    @property
    def description(self) -> str:
        body = " ".join(f"{w}x{b}" for w, b in self.stages)
        return (f"ResNet-style CNN: stem {self.stem_width}ch stride {self.stem_stride}, "
                f"BasicBlock stages (width x blocks) {body}, GAP, linear")


FAMILY: tuple[FashionNetConfig, ...] = (
    FashionNetConfig("fnet-xs", 8, 2, ((16, 1),), epochs=6, augment=False),
    FashionNetConfig("fnet-s", 16, 1, ((16, 1), (32, 1)), epochs=6, augment=False),
    FashionNetConfig("fnet-m", 16, 1, ((32, 1), (64, 1)), epochs=8, augment=True),
    FashionNetConfig("fnet-l", 32, 1, ((32, 2), (64, 2)), epochs=8, augment=True),
)


# --- architecture (torch, built lazily) ------------------------------------------------------


class VariantRecord(TypedDict):
    """One variant's entry in recipe.json: its architecture, training and export check;
    `test_accuracy` (top-1 on the test set, ONNX Runtime) once measured."""

    name: str
    file: str
    description: str
    stem_width: int
    stem_stride: int
    stages: list[list[int]]
    epochs: int
    augment: bool
    params: int
    train_seconds: float
    val_accuracy: float | None
    epoch_log: list[dict[str, float]]
    onnx_max_abs_diff: float
    onnx_bytes: int
    sha256: str
    test_accuracy: NotRequired[float]


class RecipeHeader(TypedDict):
    """What recipe.json says of the whole family: how, where and from what it was built."""

    family: str
    built_at: str
    machine: dict[str, str]
    data: dict[str, JSON]
    tuning: str
    recipe: dict[str, JSON]
    export: dict[str, JSON]


class Recipe(RecipeHeader):
    """recipe.json: the header, the total training time (s) and one entry per variant."""

    total_train_seconds: float
    variants: list[VariantRecord]


@functools.cache
def _classes() -> tuple[type[nn.Module], type[nn.Module]]:
    """(BasicBlock, FashionNet) nn.Module classes, defined on first use (torch is optional)."""
    import torch
    from torch import Tensor, nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: Tensor) -> Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return torch.relu(out + identity)

    class FashionNet(nn.Module):
        def __init__(self, cfg: FashionNetConfig, classes: int = 10) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(1, cfg.stem_width, 3, cfg.stem_stride, 1, bias=False),
                nn.BatchNorm2d(cfg.stem_width), nn.ReLU(inplace=True))
            blocks, cin = [], cfg.stem_width
            for width, count in cfg.stages:
                blocks += [BasicBlock(cin if i == 0 else width, width, 2 if i == 0 else 1)
                           for i in range(count)]
                cin = width
            self.body = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x: Tensor) -> Tensor:
            logits: Tensor = self.fc(self.body(self.stem(x)).mean(dim=(2, 3)))
            return logits

    return BasicBlock, FashionNet


def fashion_net(cfg: FashionNetConfig) -> nn.Module:
    """A randomly initialised (torch's default init, global RNG) model in training mode."""
    return _classes()[1](cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- export and check ---------------------------------------------------------------------


def export_onnx(model: nn.Module, path: Path) -> None:
    """TorchScript exporter, opset 17, `input` [batch, 1, 28, 28] -> `logits` [batch, 10].

    Traced at batch 1 so the check (batch 4) also proves the batch axis is dynamic.
    """
    import torch

    # torch's stubs leave out Module.to(memory_format=...), which it takes
    model = model.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def check_onnx(path: Path, model: nn.Module, inputs: np.ndarray) -> float:
    """Largest |ORT - torch| logit difference on `inputs` (N, 1, 28, 28) float32; raises
    ExportCheckFailed above CHECK_ATOL (absolute, no relative slack)."""
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        want = model.eval()(torch.from_numpy(inputs)).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
    diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    if diff > CHECK_ATOL:
        raise ExportCheckFailed(
            f"{path}: ONNX Runtime logits differ from torch by {diff:.3g} (shapes {got.shape} "
            f"vs {want.shape}; allowed {CHECK_ATOL}); the export is wrong, not kept")
    return diff


# --- the pool spec --------------------------------------------------------------------------


def preprocessing() -> Preprocessing:
    return Preprocessing(
        scale=SCALE, mean=[MEAN], std=[STD], layout="NCHW",
        note="grey 28x28 Fashion-MNIST images: x = (pixel * scale - mean) / std, "
             "mean and std of the training set",
    )


def fashion_pool_spec(records: list[VariantRecord], source: str) -> PoolSpec:
    """The spec for variant `records` (recipe.json entries: name, file, test_accuracy,
    description); accuracy is measured on the test set, `source` says when and how."""
    variants = [
        VariantSpec(
            name=r["name"], path=r["file"], description=r["description"],
            accuracy=Accuracy(value=r["test_accuracy"], kind=AccuracyKind.MEASURED,
                              metric="top1", source=source),
        )
        for r in records
    ]
    return PoolSpec(
        application=APPLICATION,
        input=InputSpec(name=INPUT_NAME, shape=[1, 28, 28], dtype="float32",
                        preprocessing=preprocessing()),
        output=OUTPUT_NAME, labels=LABELS_FILE, deadline_ms=DEADLINE_MS, variants=variants,
    )


def _write_spec(out: Path, recipe: Recipe, source: str) -> Path:
    (out / LABELS_FILE).write_text("\n".join(CLASSES) + "\n")
    dump_pool_spec(fashion_pool_spec(recipe["variants"], source), out / "pool.yaml")
    return out / "pool.yaml"


def read_recipe(folder: Path = SHIPPED_DIR) -> Recipe:
    """The recipe.json in `folder` (the shipped one by default)."""
    path = folder / RECIPE_FILE
    if not path.is_file():
        raise SpecError(f"{path} is missing; reinstall gearshift or build with --retrain")
    recipe: Recipe = json.loads(path.read_text())
    return recipe


def _copy_shipped(out: Path, report: ProgressHook) -> Recipe:
    """Copy the shipped ONNX files into `out`, checking each against its recorded sha256."""
    recipe = read_recipe()
    total = len(recipe["variants"])
    for i, r in enumerate(recipe["variants"]):
        src = SHIPPED_DIR / r["file"]
        if not src.is_file() or file_sha256(src) != r["sha256"]:
            raise SpecError(f"shipped model {src} is missing or differs from {RECIPE_FILE}; "
                            "reinstall gearshift or build with --retrain")
        shutil.copyfile(src, out / r["file"])
        report(i + 1, total, f"copied {r['file']}")
    return recipe


# --- training the family ----------------------------------------------------------------


def _train_variant(cfg: FashionNetConfig, out: Path, recipe: TrainRecipe,
                   data: dict[str, LabelledImages],
                   step: Callable[[int, str], None]) -> VariantRecord:
    """Train, export and check one variant; returns its recipe.json entry (no accuracy yet)."""
    import torch

    from gearshift.zoo.fashion_train import train

    torch.manual_seed(recipe.seed)
    model = fashion_net(cfg)
    result = train(model, data["train"], cfg.epochs, cfg.augment, recipe,
                   hook=lambda done, total, msg: step(done, f"{cfg.name} epoch {done}/{total}: "
                                                           f"{msg}"))
    path = out / f"{cfg.name}.onnx"
    export_onnx(model, path)
    check_inputs = ((data["train"].images[:64] - MEAN) / STD).astype(np.float32)
    diff = check_onnx(path, model, check_inputs)
    return {
        "name": cfg.name, "file": path.name, "description": cfg.description,
        "stem_width": cfg.stem_width, "stem_stride": cfg.stem_stride,
        "stages": [list(s) for s in cfg.stages], "epochs": cfg.epochs, "augment": cfg.augment,
        "params": parameter_count(model), "train_seconds": round(result.seconds, 1),
        "val_accuracy": result.val_accuracy, "epoch_log": list(result.epoch_log),
        "onnx_max_abs_diff": diff, "onnx_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }


def _recipe_header(recipe: TrainRecipe) -> RecipeHeader:
    import onnxruntime
    import torch

    return {
        "family": "fnet: ResNet-style CNNs (BasicBlocks), Fashion-MNIST, 28x28 grey",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                    "numpy": np.__version__},
        "data": {"train": "Fashion-MNIST train set, 60000 images (minus val_size held out)",
                 "test": TEST_SOURCE, "scale": SCALE, "mean": MEAN, "std": STD},
        "tuning": "epochs and augmentation were set from pilot runs scored on a seeded "
                  "5000-image validation split of the train set (TrainRecipe.val_size); the "
                  "shipped models train on all 60000 train images; the test set is only "
                  "measured, never tuned on",
        "recipe": recipe.to_dict(),
        "export": {"opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)",
                   "check": f"ONNX Runtime vs torch logits, atol {CHECK_ATOL}"},
    }


def train_family(out: Path, recipe: TrainRecipe, data_dir: Path,
                 family: tuple[FashionNetConfig, ...], report: ProgressHook) -> Recipe:
    """Train every variant of `family` into `out`, measure test accuracy with ONNX Runtime,
    write `out/recipe.json`; returns its content."""
    from gearshift.zoo.evaluate import top1_accuracy

    data = {"train": load_fashion("train", data_dir), "test": load_fashion("test", data_dir)}
    total = sum(c.epochs for c in family) + len(family)
    header, done, start = _recipe_header(recipe), 0, time.perf_counter()
    records: list[VariantRecord] = []
    for cfg in family:
        base = done
        record = _train_variant(cfg, out, recipe, data, functools.partial(_offset, report, base,
                                                                          total))
        done = base + cfg.epochs
        report(done, total, f"{cfg.name}: measuring test accuracy")
        test = ((data["test"].images - MEAN) / STD).astype(np.float32)
        record["test_accuracy"] = top1_accuracy(out / record["file"], test, data["test"].labels,
                                                threads=recipe.threads)
        records.append(record)
        done += 1
        report(done, total, f"{cfg.name}: test accuracy {record['test_accuracy']:.4f}")
    content: Recipe = {**header, "total_train_seconds": round(time.perf_counter() - start, 1),
               "variants": records}
    (out / RECIPE_FILE).write_text(json.dumps(content, indent=2) + "\n")
    return content


def _offset(report: ProgressHook, base: int, total: int, done: int, message: str) -> None:
    """`report` for one variant's epochs, counted from `base` of `total` steps."""
    report(base + done, total, message)


def _no_progress(done: int, total: int, message: str) -> None:
    """The default progress hook: report nothing."""


def build_fashion_pool(
    out: Path,
    retrain: bool = False,
    data_dir: Path = DEFAULT_FASHION_DIR,
    progress: ProgressHook | None = None,
) -> Path:
    """Write the fashion pool into `out` (ONNX files, `classes.txt`, `pool.yaml`); returns the
    spec's path.

    Without `retrain`: copies the shipped models (no torch, no data set needed). Accuracy is
    kind "measured": the shipped recipe's test accuracy, measured with ONNX Runtime on the
    10,000 test images when the files were built (the files are byte-identical, checked by
    sha256); `gearshift evaluate` re-measures it. With `retrain`: trains the family from
    scratch on the Fashion-MNIST files in `data_dir` (minutes of CPU; needs torch) and also
    writes `out/recipe.json`. `progress(done, total, message)` reports copies or epochs.
    """
    out, report = Path(out), progress or _no_progress
    out.mkdir(parents=True, exist_ok=True)
    if retrain:
        from gearshift.zoo.fashion_train import TrainRecipe

        recipe = train_family(out, TrainRecipe(), Path(data_dir), FAMILY, report)
        source = f"{TEST_SOURCE}, measured with ONNX Runtime right after training (recipe.json)"
    else:
        recipe = _copy_shipped(out, report)
        source = (f"{TEST_SOURCE}, measured with ONNX Runtime when the shipped file was built "
                  "(recipe.json); re-measure with `gearshift evaluate`")
    return _write_spec(out, recipe, source)
