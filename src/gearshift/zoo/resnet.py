"""ResNet-18..152 in the exact torchvision layout, exported to ONNX: a real-size pool for CPU serving.

The architectures are written here (no torchvision), module for module, so a torchvision
state dict (for example `resnet50-0676ba61.pth`) loads with `strict=True`. Without weights the
models get torchvision's random initialisation, seeded per depth: latency is real, accuracy is
not, so every variant declares torchvision's published ImageNet-1k figure instead.

`build_resnet_pool` exports each depth to `out/resnetNN.onnx`, checks ONNX Runtime against torch,
records the build arguments in `out/resnetNN.onnx.json` and reuses a variant whose file and
record match on the next run; then it (re)writes `out/pool.yaml`.

Torch is an optional extra (`gearshift[zoo]`): it is imported inside functions only, so this
module imports without it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gearshift.errors import GearshiftError, SpecError
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

ProgressHook = Callable[[int, int, str], None]
"""Called as `progress(done, total, message)`: `done` of `total` variants finished so far."""

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


# --- architecture (torch, built lazily) ------------------------------------------------------


@functools.cache
def _classes() -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    """Define torchvision's BasicBlock, Bottleneck (stride on the 3x3, "v1.5") and ResNet on
    first use (torch is optional, so the classes cannot live at module level)."""
    import torch
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
            return self.relu(out + identity)

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
            return self.relu(out + identity)

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
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return BasicBlock, Bottleneck, ResNet


def _make_stage(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int) -> Any:
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
    basic, bottleneck, resnet_cls = _classes()
    block = basic if cfg.block == "basic" else bottleneck
    model = resnet_cls(block, cfg.layers, num_classes)
    _init_weights(model)
    return model


def _config(depth: int) -> ResNetConfig:
    if depth not in RESNETS:
        choices = ", ".join(str(d) for d in RESNETS)
        raise SpecError(f"no ResNet of depth {depth}; choose from {choices}")
    return RESNETS[depth]
