"""The ONNX Runtime runtime computes what the model says, at any thread count and batch size."""

from __future__ import annotations

import numpy as np
import pytest

from gearshift.errors import BadRequest, ModelNotFound
from gearshift.runtime.base import Runtime, RuntimeSettings, load_runtime
from gearshift.runtime.onnx import OnnxRuntime, session_options
from tests.reference import mlp_reference


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("spinning", [False, True])
@pytest.mark.parametrize("batch", [1, 5])
def test_outputs_equal_reference(tiny_spec, threads: int, spinning: bool, batch: int) -> None:
    models = {n: tiny_spec.model_path(n) for n in tiny_spec.variant_names()}
    rt = OnnxRuntime(models, RuntimeSettings(threads=threads, spinning=spinning))
    x = np.random.default_rng(1).standard_normal((batch, 1, 8, 8)).astype(np.float32)
    for name in tiny_spec.variant_names():
        out = rt.infer(name, {"input": x})["logits"]
        np.testing.assert_allclose(out, mlp_reference(models[name], x), rtol=1e-4, atol=1e-4)


def test_thread_count_is_always_explicit() -> None:
    opts = session_options(RuntimeSettings(threads=2))
    assert opts.intra_op_num_threads == 2
    assert opts.inter_op_num_threads == 1
    with pytest.raises(ValueError, match="threads must be >= 1"):
        RuntimeSettings(threads=0)


def test_bad_input_and_unknown_variant(tiny_spec) -> None:
    rt = OnnxRuntime({"tiny-s": tiny_spec.model_path("tiny-s")}, RuntimeSettings())
    with pytest.raises(BadRequest, match="tiny-s"):
        rt.infer("tiny-s", {"input": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(ModelNotFound, match="loaded: tiny-s"):
        rt.infer("tiny-x", {"input": np.zeros((1, 1, 8, 8), np.float32)})


def test_the_engine_is_a_setting(tiny_spec) -> None:
    """Workers build their runtime through `load_runtime` from the settings' engine name."""
    models = {"tiny-s": tiny_spec.model_path("tiny-s")}
    rt = load_runtime(models, RuntimeSettings(engine="onnxruntime"))
    assert isinstance(rt, OnnxRuntime) and isinstance(rt, Runtime)
    assert rt.variants() == ["tiny-s"]
    with pytest.raises(ValueError, match="unknown runtime engine 'tvm'; known: onnxruntime"):
        RuntimeSettings(engine="tvm")
