"""ResNet-18..152 in the exact torchvision layout, exported to ONNX: a real-size pool for CPU serving.

The architectures are written here (no torchvision), module for module, so a torchvision
state dict (for example `resnet50-0676ba61.pth`) loads with `strict=True`. Without weights the
models get torchvision's random initialisation, seeded per depth, with BatchNorm scales
calibrated on noise so activations stay at a trained network's scale: latency is real, accuracy
is not, so every variant declares torchvision's published ImageNet-1k figure instead.

`build_resnet_pool` exports each depth to `out/resnetNN.onnx`, checks ONNX Runtime against torch,
records the build arguments in `out/resnetNN.onnx.json` and reuses a variant whose file and
record match on the next run; then it (re)writes `out/pool.yaml`.

Torch is an optional extra (`gearshift[zoo]`): it is imported inside functions only, so this
module imports without it.
"""

from __future__ import annotations

import functools
import json
import pickle
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np

from gearshift.errors import GearshiftError, SpecError
from gearshift.files import file_sha256
from gearshift.progress import StepCallback as ProgressHook
from gearshift.types import AccuracyKind
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

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BUILDER_VERSION = 1  # bump when the export changes, so old files are rebuilt
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CHECK_ATOL = 1e-3
CHECK_RTOL = 1e-3


class ExportCheckFailed(GearshiftError):
    """The exported ONNX model's output differs from the torch model's on the same input."""


@dataclass(frozen=True)
class ResNetConfig:
    """One depth: block type, blocks per stage, and torchvision's published ImageNet-1k accuracy
    for the IMAGENET1K_V1 weights (fractions in [0, 1])."""

    depth: int
    block: Literal["basic", "bottleneck"]
    layers: tuple[int, int, int, int]
    top1: float
    top5: float

    @property
    def name(self) -> str:
        return f"resnet{self.depth}"

    @property
    def description(self) -> str:
        block = "BasicBlock" if self.block == "basic" else "Bottleneck"
        return f"ResNet-{self.depth} ({block} {list(self.layers)})".replace(", ", ",")


RESNETS: dict[int, ResNetConfig] = {
    18: ResNetConfig(18, "basic", (2, 2, 2, 2), top1=0.69758, top5=0.89078),
    34: ResNetConfig(34, "basic", (3, 4, 6, 3), top1=0.73314, top5=0.91420),
    50: ResNetConfig(50, "bottleneck", (3, 4, 6, 3), top1=0.76130, top5=0.92862),
    101: ResNetConfig(101, "bottleneck", (3, 4, 23, 3), top1=0.77374, top5=0.93546),
    152: ResNetConfig(152, "bottleneck", (3, 8, 36, 3), top1=0.78312, top5=0.94046),
}
DEPTHS: tuple[int, ...] = tuple(RESNETS)

TORCHVISION_SOURCE = "torchvision published ImageNet-1k"
INT8_PUBLISHED: dict[int, tuple[float, float, str]] = {
    18: (0.69494, 0.88882, "torchvision ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1"),
    50: (0.75920, 0.92814, "torchvision ResNet50_QuantizedWeights.IMAGENET1K_FBGEMM_V1"),
}
"""(top-1, top-5, source) of the int8 ResNets whose int8 figure is published for the same
IMAGENET1K_V1 weights as the fp32 figures above."""
INT8_WORST_DROP = (0.00326, 0.00196)
"""(top-1, top-5) fractions: the largest drop from fp32 to int8 among torchvision's published
int8 ResNet-family weights (top-1: ResNeXt-101 32x8d 79.312 -> 78.986; top-5: ResNet-18
89.078 -> 88.882), declared for the depths with no published int8 figure."""


# --- architecture (torch, built lazily) ------------------------------------------------------


# torch is optional, so the nn.Module classes are defined on first use by cached factories.


@functools.cache
def _basic_block() -> type[nn.Module]:
    """torchvision's BasicBlock: two 3x3 convs (stride on the first), residual, ReLU."""
    from torch import Tensor, nn

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes: int, planes: int, stride: int, downsample: Any) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x: Tensor) -> Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            y: Tensor = self.relu(out + identity)
            return y

    return BasicBlock


@functools.cache
def _bottleneck() -> type[nn.Module]:
    """torchvision's Bottleneck, 1x1 -> 3x3 (stride here: "v1.5") -> 1x1 x4, residual, ReLU."""
    from torch import Tensor, nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes: int, planes: int, stride: int, downsample: Any) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x: Tensor) -> Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            identity = x if self.downsample is None else self.downsample(x)
            y: Tensor = self.relu(out + identity)
            return y

    return Bottleneck


@functools.cache
def _resnet_class() -> type[nn.Module]:
    """torchvision's ResNet: 7x7 stem and max pool, layer1..layer4, global average pool, fc."""
    import torch
    from torch import Tensor, nn

    class ResNet(nn.Module):
        def __init__(self, block: type[nn.Module], layers: Sequence[int], classes: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
                stage = _make_stage(block, inplanes, planes, blocks, stride=1 if i == 0 else 2)
                self.add_module(f"layer{i + 1}", stage)
                inplanes = planes * block.expansion  # type: ignore[attr-defined]
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(inplanes, classes)

        def forward(self, x: Tensor) -> Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for i in range(1, 5):
                x = self.get_submodule(f"layer{i}")(x)
            logits: Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
            return logits

    return ResNet


def _make_stage(
    block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int
) -> Any:
    """One `layerN`: a Sequential of `blocks` blocks; the first may downsample (1x1 conv + BN)."""
    from torch import nn

    expansion: int = block.expansion  # type: ignore[attr-defined]
    downsample = None
    if stride != 1 or inplanes != planes * expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * expansion, planes, 1, None) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming-normal convs (fan_out), BN weight 1 and bias 0."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0.0)


def resnet(depth: int, num_classes: int = 1000) -> nn.Module:
    """A ResNet of `depth` (18, 34, 50, 101 or 152) with torchvision's module names and
    parameter shapes, randomly initialised from torch's global RNG, in training mode."""
    cfg = _config(depth)
    block = _basic_block() if cfg.block == "basic" else _bottleneck()
    model = _resnet_class()(block, cfg.layers, num_classes)
    _init_weights(model)
    return model


def _config(depth: int) -> ResNetConfig:
    if depth not in RESNETS:
        choices = ", ".join(str(d) for d in RESNETS)
        raise SpecError(f"no ResNet of depth {depth}; choose from {choices}")
    return RESNETS[depth]


def _calibrate_batchnorm(model: nn.Module, image_size: int, batch: int = 4) -> None:
    """Scale every BatchNorm so its output has unit second moment per channel on N(0, 1) images.

    With torchvision's random init a BN in eval mode is the identity and the residual sums
    blow up with depth (ResNet-152 logits reach ~1e8). Each BN gets running_var = E[x^2] of its
    own input (measured in one eval-mode pass, earlier BNs already set) and running_mean = 0.
    Keeping the mean at 0 matters: subtracting measured means adds biases that make a deep
    random ResNet chaotic, so float32 rounding alone moved ResNet-152 logits by ~3e-3 and the
    ONNX check failed; pure scaling keeps the ReLU network homogeneous and the check tight.
    Uses torch's global RNG; leaves the model in eval mode.
    """
    import torch
    from torch import nn

    def set_stats(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        mean, var = bn.running_mean, bn.running_var
        if not (isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor)):
            raise TypeError(f"{bn} keeps no running statistics")
        mean.zero_()
        var.copy_((x * x).mean(dim=(0, 2, 3)))

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [bn.register_forward_pre_hook(set_stats) for bn in bns]
    model.eval()
    try:
        with torch.no_grad():
            model(torch.randn(batch, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()


# --- weights ------------------------------------------------------------------------------


def find_weights(weights_dir: Path, depth: int) -> Path:
    """The one file `resnet{depth}*.pth` in `weights_dir` (e.g. torchvision's
    `resnet50-0676ba61.pth`); SpecError if the folder is missing, has none, or has several."""
    if not weights_dir.is_dir():
        raise SpecError(f"weights folder {weights_dir} does not exist or is not a folder")
    pattern = re.compile(rf"resnet{depth}(?!\d).*\.pth")
    found = sorted(p for p in weights_dir.iterdir() if pattern.fullmatch(p.name))
    if not found:
        raise SpecError(
            f"weights folder {weights_dir} has no file for ResNet-{depth}: expected one named "
            f"resnet{depth}*.pth (for example torchvision's resnet50-0676ba61.pth); add it, "
            "drop this depth, or build without a weights folder for random weights"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SpecError(
            f"weights folder {weights_dir} has several files for ResNet-{depth} ({names}); "
            "keep exactly one"
        )
    return found[0]


def _load_weights(model: nn.Module, path: Path, depth: int) -> None:
    """Load a torchvision-format state dict (strict); SpecError naming the problem otherwise."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise SpecError(f"cannot read weights file {path} as a torch state dict: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()
        summary = " ".join(line.strip() for line in detail[:4])
        raise SpecError(
            f"{path} is not a torchvision ResNet-{depth} state dict ({summary}); "
            f"use torchvision's resnet{depth} IMAGENET1K weights or a state dict of the same layout"
        ) from None


def make_resnet(
    depth: int, weights: Path | None = None, image_size: int = 224, seed: int = 0
) -> nn.Module:
    """The eval-mode model `build_resnet_pool` exports: the state dict file `weights` loaded
    (strict), or random from seed `seed + depth` with BatchNorm scales calibrated on noise
    images of `image_size` x `image_size` pixels. Torch's global RNG state is left untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + depth)
        model = resnet(depth)
        if weights is None:
            _calibrate_batchnorm(model, image_size)
    if weights is not None:
        _load_weights(model, weights, depth)
    return model.eval()


# --- export and check ---------------------------------------------------------------------


def _export_onnx(model: nn.Module, path: Path, image_size: int) -> None:
    """Export with the TorchScript exporter (opset 17, `input` -> `logits`, dynamic batch).

    Traced with a batch of 1 so the check (batch of 2) also proves the batch axis is dynamic.
    """
    import torch

    dummy = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def check_onnx_matches(path: Path, model: nn.Module, image_size: int, seed: int = 0) -> float:
    """Run a seeded random batch of 2 through torch and ONNX Runtime; returns the largest
    absolute difference, or raises ExportCheckFailed if outside atol=rtol=1e-3."""
    import onnxruntime as ort
    import torch

    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads() or 2  # 0 would mean "all cores"
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    if got.shape != want.shape:
        raise ExportCheckFailed(f"{path}: ONNX output shape {got.shape} != torch {want.shape}")
    diff = float(np.max(np.abs(got - want)))
    if not np.allclose(got, want, atol=CHECK_ATOL, rtol=CHECK_RTOL):
        raise ExportCheckFailed(
            f"{path}: ONNX Runtime output differs from torch (max abs diff {diff:.3g}, "
            f"allowed atol={CHECK_ATOL} rtol={CHECK_RTOL}); the export is wrong, not kept"
        )
    return diff


# --- build records (reuse) ----------------------------------------------------------------


class BuildRecord(TypedDict):
    """What determines a variant's file (the `args` of its sidecar JSON)."""

    builder: int
    depth: int
    image_size: int
    weights: str  # "random" or "sha256:<hex>" of the weights file
    seed: int
    opset: int
    torch: str


def _build_record(depth: int, image_size: int, weights: Path | None, seed: int) -> BuildRecord:
    """What determines a variant's file: compared with the sidecar to decide on reuse."""
    import torch

    return {
        "builder": BUILDER_VERSION,
        "depth": depth,
        "image_size": image_size,
        "weights": "random" if weights is None else f"sha256:{file_sha256(weights)}",
        "seed": seed,
        "opset": OPSET,
        "torch": torch.__version__,
    }


def _sidecar(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".json")


def _is_fresh(onnx_path: Path, record: BuildRecord) -> bool:
    """True if `onnx_path` and its sidecar exist, the sidecar's arguments equal `record`, and
    the file's hash equals the one recorded after its successful check."""
    sidecar = _sidecar(onnx_path)
    if not (onnx_path.is_file() and sidecar.is_file()):
        return False
    try:
        saved = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or saved.get("args") != record:
        return False
    return saved.get("onnx_sha256") == file_sha256(onnx_path)


def _build_variant(
    depth: int,
    out: Path,
    weights: Path | None,
    image_size: int,
    seed: int,
    step: Callable[[str], None],
) -> bool:
    """Build, export and check `out/resnet{depth}.onnx` unless a fresh one exists.

    Returns True if the existing file was reused. The file appears (by rename) only after the
    check passed; the sidecar is written last, so an interrupted build is redone next time.
    """
    onnx_path = out / f"resnet{depth}.onnx"
    record = _build_record(depth, image_size, weights, seed)
    if _is_fresh(onnx_path, record):
        return True
    _sidecar(onnx_path).unlink(missing_ok=True)
    step("loading weights" if weights else "building")
    model = make_resnet(depth, weights, image_size, seed)
    tmp = onnx_path.with_name(onnx_path.name + ".tmp")
    try:
        step("exporting to ONNX")
        _export_onnx(model, tmp, image_size)
        step("checking ONNX Runtime against torch")
        diff = check_onnx_matches(tmp, model, image_size, seed)
    except BaseException:  # a failed check or an interrupt leaves no half-made file behind
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(onnx_path)
    sidecar = {"args": record, "onnx_sha256": file_sha256(onnx_path), "max_abs_diff": diff}
    _sidecar(onnx_path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return False


# --- the pool -----------------------------------------------------------------------------


def int8_accuracy(name: str, fp32: Accuracy) -> Accuracy | None:
    """The declared accuracy of an int8 copy of ResNet variant `name` whose fp32 accuracy is
    torchvision's published figure (`_accuracy`): the published int8 figure where there is one
    (ResNet-18, -50), else the fp32 figure less `INT8_WORST_DROP`. None for any other variant
    (its int8 accuracy is not known here)."""
    match = re.fullmatch(r"resnet(\d+)", name)
    if match is None or not fp32.source.startswith(TORCHVISION_SOURCE):
        return None
    depth, top5 = int(match.group(1)), fp32.metric == "top5"
    if depth not in RESNETS or fp32.metric not in ("top1", "top5"):
        return None
    label = "top-5" if top5 else "top-1"
    if depth in INT8_PUBLISHED:
        top1_8, top5_8, where = INT8_PUBLISHED[depth]
        value, source = (top5_8 if top5 else top1_8), f"{where} ImageNet-1k {label}"
    else:
        drop = INT8_WORST_DROP[top5]
        value = fp32.value - drop
        source = (f"torchvision publishes no int8 ResNet-{depth} figure: the fp32 figure less "
                  f"{drop * 100:.3f} points, the largest {label} drop among torchvision's "
                  "published int8 ResNet-family weights")
    return Accuracy(value=round(value, 5), kind=AccuracyKind.DECLARED, metric=fp32.metric,
                    source=source + "; declared, not measured (this file's weights are "
                    "quantized by gearshift zoo quantize)")


def _accuracy(cfg: ResNetConfig, metric: str, weights: Path | None, image_size: int) -> Accuracy:
    """torchvision's published figure, declared; the source says what the file really holds."""
    label = "top-1" if metric == "top1" else "top-5"
    source = f"{TORCHVISION_SOURCE} {label} for IMAGENET1K_V1 weights at 224x224"
    if image_size != 224:
        source += f" (this pool feeds {image_size}x{image_size})"
    if weights is None:
        source += (
            "; this file has random weights: latency is real, accuracy is declared, not measured"
        )
    else:
        source += f"; weights loaded from {weights.name}, but accuracy is declared, not measured"
    value = cfg.top1 if metric == "top1" else cfg.top5
    return Accuracy(value=value, kind=AccuracyKind.DECLARED, metric=metric, source=source)


def resnet_pool_spec(
    depths: Sequence[int],
    image_size: int = 224,
    metric: Literal["top1", "top5"] = "top1",
    weight_files: dict[int, Path] | None = None,
) -> PoolSpec:
    """The `imagenet-resnet` pool spec for `depths`, variant `resnetNN` at `resnetNN.onnx`."""
    weight_files = weight_files or {}
    variants = []
    for depth in depths:
        cfg, w = _config(depth), weight_files.get(depth)
        how = "random weights" if w is None else f"weights from {w.name}"
        variants.append(
            VariantSpec(
                name=cfg.name,
                path=f"{cfg.name}.onnx",
                accuracy=_accuracy(cfg, metric, w, image_size),
                description=f"{cfg.description}, {how}",
            )
        )
    return PoolSpec(
        application="imagenet-resnet",
        input=_input_spec(image_size),
        deadline_ms=300.0,
        variants=variants,
    )


def _input_spec(image_size: int) -> InputSpec:
    """ImageNet input: RGB, resize the short side to size/0.875, centre-crop, /255, normalise."""
    prep = Preprocessing(
        resize=int(image_size / 0.875),
        crop=image_size,
        scale=1 / 255,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        layout="NCHW",
        note="RGB; resize short side, centre-crop, scale to [0, 1], ImageNet normalisation "
        "(x - mean) / std per channel",
    )
    return InputSpec(
        name=INPUT_NAME, shape=[3, image_size, image_size], dtype="float32", preprocessing=prep
    )


def _validate(depths: Sequence[int], image_size: int, metric: str) -> list[int]:
    """Depths without repeats, in the given order; SpecError for anything unbuildable."""
    unique = list(dict.fromkeys(depths))
    if not unique:
        raise SpecError("no depths given; choose from " + ", ".join(str(d) for d in RESNETS))
    for depth in unique:
        _config(depth)
    if image_size < 32:
        raise SpecError(f"image_size {image_size} is too small; ResNets need at least 32 pixels")
    if metric not in ("top1", "top5"):
        raise SpecError(f"metric {metric!r} is not top1 or top5")
    return unique


def _no_progress(done: int, total: int, message: str) -> None:
    """The default progress hook: report nothing."""


def _report_step(report: ProgressHook, done: int, total: int, name: str, message: str) -> None:
    report(done, total, f"{name}: {message}")


def build_resnet_pool(
    out: Path,
    weights: Path | None = None,
    image_size: int = 224,
    depths: Sequence[int] = DEPTHS,
    progress: ProgressHook | None = None,
    seed: int = 0,
    metric: Literal["top1", "top5"] = "top1",
) -> Path:
    """Build `out/resnetNN.onnx` for each depth and (re)write `out/pool.yaml`; returns its path.

    `weights`: a folder with one torchvision state dict `resnetNN*.pth` per depth (all are looked
    up before anything is built); None for random weights seeded with `seed + depth`.
    `image_size`: input height and width in pixels. Each file is checked against torch with
    ONNX Runtime and reused on a later call with the same arguments. `progress(done, total,
    message)` is called as work proceeds; `done` counts finished variants out of `total`.
    Raises SpecError for bad arguments or weights, ExportCheckFailed if an export is wrong.
    """
    out, report = Path(out), progress or _no_progress
    todo = _validate(depths, image_size, metric)
    files = {d: find_weights(Path(weights), d) for d in todo} if weights is not None else {}
    out.mkdir(parents=True, exist_ok=True)
    total = len(todo)
    for i, depth in enumerate(todo):
        name = f"resnet{depth}"
        step = functools.partial(_report_step, report, i, total, name)
        step("checking for a previous build")
        reused = _build_variant(depth, out, files.get(depth), image_size, seed, step)
        report(i + 1, total, f"{name}: {'reused' if reused else 'built'}")
    dump_pool_spec(resnet_pool_spec(todo, image_size, metric, files), out / "pool.yaml")
    report(total, total, f"wrote {out / 'pool.yaml'}")
    return out / "pool.yaml"
