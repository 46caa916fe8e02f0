"""The runtime interface: load a pool's variants once, then run any of them on a batch.

Each variant names its engine and precision (`ModelFile`); `load_runtime` builds one runtime
per engine the variants name, importing the engine's module only when called (a worker calls
it after pinning itself to its cores, so the engine's thread pools inherit that affinity), and
routes each variant's calls to its engine."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from gearshift.errors import ModelNotFound

ENGINES: dict[str, str] = {
    "onnxruntime": "gearshift.runtime.onnx:OnnxRuntime",
    "openvino": "gearshift.runtime.openvino:OpenVinoRuntime",
}
"""Engine name -> "module:class" of its `Runtime`, constructed as cls(models, settings)."""

PRECISIONS: dict[str, tuple[str, ...]] = {"onnxruntime": ("native",),
                                          "openvino": ("native", "bf16")}
"""The precisions each engine runs a model file at: "native" is what the file holds (fp32, or
int8 for a quantized file); "bf16" computes in bfloat16 (OpenVINO's inference precision hint:
on this CPU, AVX512_BF16, twice fp32's speed). ONNX Runtime's CPU provider has no bf16 path
on x86 (its bf16 fast-math option is for ARM64)."""

Engine = Literal["onnxruntime", "openvino"]
Precision = Literal["native", "bf16"]
T = TypeVar("T")


def loaded(held: Mapping[str, T], variant: str) -> T:
    """What a runtime holds for `variant`, or `ModelNotFound` naming the variants it holds."""
    try:
        return held[variant]
    except KeyError:
        raise ModelNotFound(f"variant {variant!r} is not loaded; loaded: "
                            f"{', '.join(held)}") from None


@dataclass(frozen=True)
class ModelFile:
    """One variant as a runtime loads it: the ONNX file, the engine, the precision."""

    path: Path
    engine: Engine = "onnxruntime"
    precision: Precision = "native"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown runtime engine {self.engine!r}; known: "
                             f"{', '.join(sorted(ENGINES))}")
        if self.precision not in PRECISIONS[self.engine]:
            raise ValueError(f"engine {self.engine} runs no {self.precision!r} precision; it "
                             f"runs {', '.join(PRECISIONS[self.engine])}")


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

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@runtime_checkable
class Runtime(Protocol):
    """A set of loaded variants that can each run a batch."""

    def variants(self) -> list[str]: ...

    def input_names(self, variant: str) -> list[str]: ...

    def output_names(self, variant: str) -> list[str]: ...

    def infer(self, variant: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `variant` on `inputs` (batch dim first); returns every output by name."""
        ...


def load_runtime(models: Mapping[str, ModelFile | Path], settings: RuntimeSettings) -> Runtime:
    """Every variant of `models` (name -> model; a bare path is ONNX Runtime at the file's own
    precision) loaded in its engine; one engine's runtime as it is, several behind `Engines`."""
    files = {n: m if isinstance(m, ModelFile) else ModelFile(Path(m)) for n, m in models.items()}
    by_engine: dict[str, dict[str, ModelFile]] = {}
    for name, model in files.items():
        by_engine.setdefault(model.engine, {})[name] = model
    runtimes = {engine: _engine_runtime(engine, group, settings)
                for engine, group in by_engine.items()}
    if len(runtimes) == 1:
        return next(iter(runtimes.values()))
    return Engines({n: runtimes[m.engine] for n, m in files.items()})


def _engine_runtime(engine: str, models: dict[str, ModelFile], settings: RuntimeSettings
                    ) -> Runtime:
    module, _, cls = ENGINES[engine].partition(":")
    runtime: Runtime = getattr(importlib.import_module(module), cls)(models, settings)
    return runtime


class Engines:
    """Variants of several engines behind one `Runtime`: each call goes to its variant's."""

    def __init__(self, routes: dict[str, Runtime]) -> None:
        self._routes = routes

    def variants(self) -> list[str]:
        return list(self._routes)

    def input_names(self, variant: str) -> list[str]:
        return self._route(variant).input_names(variant)

    def output_names(self, variant: str) -> list[str]:
        return self._route(variant).output_names(variant)

    def infer(self, variant: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._route(variant).infer(variant, inputs)

    def _route(self, variant: str) -> Runtime:
        return loaded(self._routes, variant)
