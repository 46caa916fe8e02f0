"""ONNX Runtime implementation of `Runtime`: one InferenceSession per variant at fixed threads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gearshift.errors import BadRequest
from gearshift.runtime.base import ModelFile, RuntimeSettings, loaded


def session_options(settings: RuntimeSettings) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if settings.graph_optimization
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    spin = "1" if settings.spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    opts.log_severity_level = 3
    return opts


class OnnxRuntime:
    """Holds one CPU session per variant, all created up front (a switch loads nothing)."""

    def __init__(self, models: Mapping[str, ModelFile | Path], settings: RuntimeSettings
                 ) -> None:
        self.settings = settings
        opts = session_options(settings)
        self._sessions: dict[str, ort.InferenceSession] = {
            name: ort.InferenceSession(str(m.path if isinstance(m, ModelFile) else m), opts,
                                       providers=["CPUExecutionProvider"])
            for name, m in models.items()
        }
        self._output_names = {n: [o.name for o in s.get_outputs()] for n, s in self._sessions.items()}

    def variants(self) -> list[str]:
        return list(self._sessions)

    def input_names(self, variant: str) -> list[str]:
        return [i.name for i in self._session(variant).get_inputs()]

    def output_names(self, variant: str) -> list[str]:
        return list(self._output_names[variant])

    def infer(self, variant: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session(variant)
        try:
            outs = session.run(self._output_names[variant], inputs)
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ValueError) as exc:
            raise BadRequest(f"variant {variant!r} rejected the input: {exc}") from None
        return dict(zip(self._output_names[variant], outs, strict=True))

    def _session(self, variant: str) -> ort.InferenceSession:
        return loaded(self._sessions, variant)
