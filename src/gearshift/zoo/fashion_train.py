"""Seeded training of one fashion classifier on Fashion-MNIST (torch, CPU).

Only `gearshift zoo build fashion --retrain` runs this; tests and the demo never train. Given
the same recipe, seed, data and torch version a run is repeatable: torch and numpy are seeded,
`torch.use_deterministic_algorithms(True)` is on and the thread count is fixed.

Torch is imported inside functions only, so this module imports without the `zoo` extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gearshift.data.fashion import MEAN, STD, LabelledImages
from gearshift.types import JSON

if TYPE_CHECKING:
    from torch import Tensor, nn

EpochHook = Callable[[int, int, str], None]
"""Called as `hook(epoch_done, epochs, message)` after each epoch."""


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters shared by every variant (the variant supplies epochs and augmentation).

    SGD with Nesterov momentum, a one-cycle learning-rate schedule peaking at `lr`, weight decay
    on every parameter. `augment`: random crop (zero padding of `pad` pixels) and horizontal
    flip with probability 0.5. `val_size` images are held out of train (seeded) and scored after
    each epoch; 0 trains on all 60,000.
    """

    seed: int = 0
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    pad: int = 2
    val_size: int = 0
    threads: int = 2

    def to_dict(self) -> dict[str, JSON]:
        return {**asdict(self), "optimizer": "SGD nesterov", "schedule": "OneCycleLR (cos)"}


@dataclass(frozen=True)
class TrainResult:
    """`seconds`: wall time of the training loop; `val_accuracy`: last epoch's, None without a
    validation split; `epoch_log`: one dict per epoch (loss, seconds, val accuracy)."""

    seconds: float
    val_accuracy: float | None
    epoch_log: tuple[dict[str, float], ...]


def split_train(data: LabelledImages, val_size: int, seed: int) -> tuple[LabelledImages, ...]:
    """A seeded (train, validation) split; validation is empty when `val_size` is 0."""
    order = np.random.default_rng(seed).permutation(len(data))
    val, train = order[:val_size], order[val_size:]
    return (LabelledImages(data.images[train], data.labels[train]),
            LabelledImages(data.images[val], data.labels[val]))


def _augment(x01: Tensor, pad: int, gen: Any) -> Tensor:
    """Random crop after zero padding (background is 0 in [0, 1] space) and random h-flip."""
    import torch

    n, _, h, w = x01.shape
    padded = torch.nn.functional.pad(x01, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    flip = torch.rand(n, generator=gen) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols]
    return out[:, None]


def _normalised(x01: Tensor) -> Tensor:
    import torch

    return ((x01 - MEAN) / STD).contiguous(memory_format=torch.channels_last)


def _run_epoch(model: nn.Module, opt: Any, sched: Any, data: LabelledImages,
               recipe: TrainRecipe, augment: bool, gen: Any) -> float:
    """One pass in a seeded random order; returns the mean training loss."""
    import torch

    x_all, y_all = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    order = torch.randperm(len(data), generator=gen)
    model.train()
    total, seen = 0.0, 0
    for start in range(0, len(data), recipe.batch_size):
        idx = order[start:start + recipe.batch_size]
        x01 = _augment(x_all[idx], recipe.pad, gen) if augment else x_all[idx]
        logits = model(_normalised(x01))
        loss = torch.nn.functional.cross_entropy(
            logits, y_all[idx], label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        opt.step()
        sched.step()
        total, seen = total + loss.item() * len(idx), seen + len(idx)
    return total / max(seen, 1)


def torch_accuracy(model: nn.Module, data: LabelledImages, batch: int = 1000) -> float:
    """Top-1 accuracy of `model` (eval mode) on `data`, computed in torch."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(data), batch):
            x = _normalised(torch.from_numpy(data.images[s:s + batch]))
            pred = model(x).argmax(1).numpy()
            correct += int((pred == data.labels[s:s + batch]).sum())
    return correct / max(len(data), 1)


def train(model: nn.Module, data: LabelledImages, epochs: int, augment: bool,
          recipe: TrainRecipe, hook: EpochHook | None = None) -> TrainResult:
    """Train `model` in place on `data` (train split) for `epochs`; returns timing and the
    validation accuracy. Seeds torch from `recipe.seed`; leaves the model in eval mode."""
    import torch

    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    train_set, val_set = split_train(data, recipe.val_size, recipe.seed)
    # torch's stubs leave out Module.to(memory_format=...), which it takes
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          nesterov=True, weight_decay=recipe.weight_decay)
    steps = epochs * -(-len(train_set) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    val_acc: float | None = None
    for epoch in range(epochs):
        t0 = time.perf_counter()
        loss = _run_epoch(model, opt, sched, train_set, recipe, augment, gen)
        entry = {"epoch": epoch + 1, "loss": round(loss, 4),
                 "seconds": round(time.perf_counter() - t0, 1)}
        if len(val_set):
            val_acc = torch_accuracy(model, val_set)
            entry["val_accuracy"] = round(val_acc, 4)
        log.append(entry)
        if hook is not None:
            hook(epoch + 1, epochs, ", ".join(f"{k} {v}" for k, v in entry.items()))
    model.eval()
    return TrainResult(time.perf_counter() - start, val_acc, tuple(log))
