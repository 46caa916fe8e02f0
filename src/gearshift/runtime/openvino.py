"""OpenVINO implementation of `Runtime`: one compiled model per variant at fixed threads, each
at its `ModelFile.precision` (bf16: OpenVINO's inference precision hint, on a CPU with
AVX512_BF16 about twice fp32's speed with logits within a few tenths of a percent).

Installed with the `openvino` extra (`pip install gearshift[openvino]`); imported only by a
worker whose pool names the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gearshift.errors import BadRequest, SpecError
from gearshift.runtime.base import ModelFile, RuntimeSettings, loaded

try:
    import openvino as ov
except ImportError:  # pragma: no cover - depends on the extra
    ov = None

PRECISION_HINTS = {"native": "f32", "bf16": "bf16"}


def compile_config(model: ModelFile, settings: RuntimeSettings) -> dict[str, Any]:
    """OpenVINO CPU properties as gearshift serves: `settings.threads` inference threads, one
    stream, latency mode, no thread pinning of its own (the worker's affinity decides: OpenVINO
    pins its threads by default, as ONNX Runtime's default does), the precision hint. An int8
    (QDQ) file runs in int8 whatever the hint."""
    return {"INFERENCE_NUM_THREADS": settings.threads, "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False,
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[model.precision]}


@dataclass(frozen=True)
class _Port:
    """An input as the model declares it: its name, dims (None: any) and dtype."""

    name: str
    dims: tuple[int | None, ...]
    dtype: np.dtype[Any]

    @classmethod
    def of(cls, port: Any) -> _Port:
        dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        return cls(port.get_any_name(), dims, np.dtype(port.get_element_type().to_dtype()))

    def check(self, variant: str, x: np.ndarray) -> None:
        """OpenVINO runs an input of another rank, shape or dtype without a word (a (1, 1, 8,
        8) array into ResNet-18 gave a (0, 1000) answer): checked here as ONNX Runtime checks."""
        if x.ndim != len(self.dims) or any(w is not None and w != n
                                           for w, n in zip(self.dims, x.shape)):
            shown = ", ".join("N" if w is None else str(w) for w in self.dims)
            raise BadRequest(f"variant {variant!r} rejected the input: {self.name} has shape "
                             f"{tuple(x.shape)}, the model takes ({shown})")
        if x.dtype != self.dtype:
            raise BadRequest(f"variant {variant!r} rejected the input: {self.name} is "
                             f"{x.dtype}, the model takes {self.dtype}")


@dataclass(frozen=True)
class _Compiled:
    """One variant ready to run: its infer request and its ports, read once at load."""

    request: Any
    inputs: tuple[_Port, ...]
    outputs: tuple[tuple[str, Any], ...]  # (name, port)


class OpenVinoRuntime:
    """Holds one compiled model and one infer request per variant, all made up front."""

    def __init__(self, models: Mapping[str, ModelFile | Path], settings: RuntimeSettings
                 ) -> None:
        if ov is None:
            raise SpecError("the pool names engine openvino, which is not installed: "
                            "pip install 'gearshift[openvino]'")
        core = ov.Core()
        self._models: dict[str, _Compiled] = {}
        for name, m in models.items():
            model = m if isinstance(m, ModelFile) else ModelFile(Path(m), engine="openvino")
            compiled = core.compile_model(core.read_model(str(model.path)), "CPU",
                                          compile_config(model, settings))
            self._models[name] = _Compiled(
                compiled.create_infer_request(), tuple(_Port.of(p) for p in compiled.inputs),
                tuple((p.get_any_name(), p) for p in compiled.outputs))

    def variants(self) -> list[str]:
        return list(self._models)

    def input_names(self, variant: str) -> list[str]:
        return [p.name for p in loaded(self._models, variant).inputs]

    def output_names(self, variant: str) -> list[str]:
        return [name for name, _ in loaded(self._models, variant).outputs]

    def infer(self, variant: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        model = loaded(self._models, variant)
        names = sorted(p.name for p in model.inputs)
        if sorted(inputs) != names:
            raise BadRequest(f"variant {variant!r} takes inputs {names}, got {sorted(inputs)}")
        for port in model.inputs:
            port.check(variant, inputs[port.name])
        try:
            results = model.request.infer(inputs)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BadRequest(f"variant {variant!r} rejected the input: {exc}") from None
        return {name: np.array(results[port]) for name, port in model.outputs}
