"""OpenVINO implementation of `Runtime`: one compiled model per variant at fixed threads, each
at its `ModelFile.precision` (bf16: OpenVINO's inference precision hint, on a CPU with
AVX512_BF16 about twice fp32's speed with logits within a few tenths of a percent).

Installed with the `openvino` extra (`pip install gearshift[openvino]`); imported only by a
worker whose pool names the engine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gearshift.errors import BadRequest, ModelNotFound, SpecError
from gearshift.runtime.base import ModelFile, RuntimeSettings

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


class OpenVinoRuntime:
    """Holds one compiled model and one infer request per variant, all made up front."""

    def __init__(self, models: Mapping[str, ModelFile | Path], settings: RuntimeSettings
                 ) -> None:
        if ov is None:
            raise SpecError("the pool names engine openvino, which is not installed: "
                            "pip install 'gearshift[openvino]'")
        core = ov.Core()
        self._compiled: dict[str, Any] = {}
        self._requests: dict[str, Any] = {}
        for name, m in models.items():
            model = m if isinstance(m, ModelFile) else ModelFile(Path(m), engine="openvino")
            compiled = core.compile_model(core.read_model(str(model.path)), "CPU",
                                          compile_config(model, settings))
            self._compiled[name] = compiled
            self._requests[name] = compiled.create_infer_request()

    def variants(self) -> list[str]:
        return list(self._compiled)

    def input_names(self, variant: str) -> list[str]:
        return [p.get_any_name() for p in self._model(variant).inputs]

    def output_names(self, variant: str) -> list[str]:
        return [p.get_any_name() for p in self._model(variant).outputs]

    def infer(self, variant: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        compiled, request = self._model(variant), self._requests[variant]
        self._check(variant, compiled, inputs)
        try:
            results = request.infer(inputs)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BadRequest(f"variant {variant!r} rejected the input: {exc}") from None
        return {p.get_any_name(): np.array(results[p]) for p in compiled.outputs}

    @staticmethod
    def _check(variant: str, compiled: Any, inputs: dict[str, np.ndarray]) -> None:
        """OpenVINO runs an input of another rank, shape or dtype without a word (a (1, 1, 8, 8)
        array into ResNet-18 gave a (0, 1000) answer): checked here as ONNX Runtime checks."""
        ports = {p.get_any_name(): p for p in compiled.inputs}
        if sorted(inputs) != sorted(ports):
            raise BadRequest(f"variant {variant!r} takes inputs {sorted(ports)}, got "
                             f"{sorted(inputs)}")
        for name, port in ports.items():
            x, dims = inputs[name], list(port.get_partial_shape())
            want = [d.get_length() if d.is_static else None for d in dims]
            dtype = port.get_element_type().to_dtype()
            if x.ndim != len(want) or any(w is not None and w != n for w, n in zip(want, x.shape)):
                shown = ", ".join("N" if w is None else str(w) for w in want)
                raise BadRequest(f"variant {variant!r} rejected the input: {name} has shape "
                                 f"{tuple(x.shape)}, the model takes ({shown})")
            if x.dtype != dtype:
                raise BadRequest(f"variant {variant!r} rejected the input: {name} is {x.dtype}, "
                                 f"the model takes {dtype}")

    def _model(self, variant: str) -> Any:
        try:
            return self._compiled[variant]
        except KeyError:
            raise ModelNotFound(f"variant {variant!r} is not loaded; loaded: "
                                f"{', '.join(self._compiled)}") from None
