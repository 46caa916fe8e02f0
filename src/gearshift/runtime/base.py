"""The runtime interface: load a pool's variants once, then run any of them on a batch.

Engines are named in `RuntimeSettings.engine` and built by `load_runtime`, which imports the
engine's module only when called (a worker calls it after pinning itself to its cores, so the
engine's thread pools inherit that affinity)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

ENGINES: dict[str, str] = {"onnxruntime": "gearshift.runtime.onnx:OnnxRuntime"}
"""Engine name -> "module:class" of its `Runtime`, constructed as cls(models, settings)."""


@dataclass(frozen=True)
class RuntimeSettings:
    """How each session is built. `threads` is the intra-op thread count (never 0: see below).

    ONNX Runtime's default (0) makes one thread per core and pins it, ignoring the process's
    affinity, so replicas sharing a machine would fight; gearshift always sets it.
    `spinning` keeps idle pool threads busy-waiting; it only helps when a replica owns its cores.
    """

    threads: int = 1
    spinning: bool = False
    graph_optimization: bool = True
    engine: str = "onnxruntime"

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown runtime engine {self.engine!r}; known: "
                             f"{', '.join(sorted(ENGINES))}")


@runtime_checkable
class Runtime(Protocol):
    """A set of loaded variants that can each run a batch."""

    def variants(self) -> list[str]: ...

    def infer(self, variant: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `variant` on `inputs` (batch dim first); returns every output by name."""
        ...


def load_runtime(models: Mapping[str, Path], settings: RuntimeSettings) -> Runtime:
    """Every variant of `models` (name -> model file) loaded in the engine `settings` names."""
    module, _, cls = ENGINES[settings.engine].partition(":")
    runtime: Runtime = getattr(importlib.import_module(module), cls)(models, settings)
    return runtime
