"""The runtimes compute what the model says, at any thread count and batch size: ONNX Runtime,
OpenVINO (fp32 and bf16), and both behind one runtime when a pool's variants name both."""

from __future__ import annotations

import numpy as np
import pytest

from gearshift.errors import BadRequest, ModelNotFound
from gearshift.runtime.base import Engines, ModelFile, Runtime, RuntimeSettings, load_runtime
from gearshift.runtime.onnx import OnnxRuntime, session_options
from gearshift.runtime.openvino import OpenVinoRuntime
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


def test_each_variant_names_its_engine(tiny_spec) -> None:
    """Workers build their runtime through `load_runtime`: one engine's runtime as it is,
    variants of two engines behind one `Engines` that routes each call to its variant's."""
    path = tiny_spec.model_path("tiny-s")
    rt = load_runtime({"tiny-s": path}, RuntimeSettings())
    assert isinstance(rt, OnnxRuntime) and isinstance(rt, Runtime)
    assert rt.variants() == ["tiny-s"]
    both = load_runtime({"a": ModelFile(path), "b": ModelFile(path, "openvino", "bf16")},
                        RuntimeSettings())
    assert isinstance(both, Engines) and both.variants() == ["a", "b"]
    assert both.input_names("b") == ["input"] and both.output_names("b") == ["logits"]
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(both.infer("b", {"input": x})["logits"],
                               both.infer("a", {"input": x})["logits"], rtol=0.03, atol=0.03)
    with pytest.raises(ModelNotFound, match="loaded: a, b"):
        both.infer("c", {"input": x})


def test_engine_and_precision_are_checked(tiny_spec) -> None:
    path = tiny_spec.model_path("tiny-s")
    with pytest.raises(ValueError, match="unknown runtime engine 'tvm'; known: onnxruntime, "
                                         "openvino"):
        ModelFile(path, "tvm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="engine onnxruntime runs no 'bf16' precision"):
        ModelFile(path, "onnxruntime", "bf16")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 5])
def test_openvino_outputs_equal_reference(tiny_spec, threads: int, batch: int) -> None:
    """fp32 within 1e-4 of the reference; bf16 (8 significant bits) within a few percent of
    the logits' scale, and the same top class on all but near-ties."""
    x = np.random.default_rng(1).standard_normal((batch, 1, 8, 8)).astype(np.float32)
    for name in tiny_spec.variant_names():
        path = tiny_spec.model_path(name)
        want = mlp_reference(path, x)
        rt = OpenVinoRuntime({"f": ModelFile(path, "openvino"),
                              "b": ModelFile(path, "openvino", "bf16")},
                             RuntimeSettings(threads=threads))
        np.testing.assert_allclose(rt.infer("f", {"input": x})["logits"], want, rtol=1e-4,
                                   atol=1e-4)
        got = rt.infer("b", {"input": x})["logits"]
        assert np.max(np.abs(got - want)) <= 0.03 * np.max(np.abs(want))


def test_openvino_rejects_what_onnx_runtime_rejects(tiny_spec) -> None:
    """OpenVINO itself runs a wrong shape silently (an empty answer): the runtime checks."""
    rt = OpenVinoRuntime({"tiny-s": ModelFile(tiny_spec.model_path("tiny-s"), "openvino")},
                         RuntimeSettings())
    with pytest.raises(BadRequest, match=r"input has shape \(1, 3, 8, 8\), the model takes "
                                         r"\(N, 1, 8, 8\)"):
        rt.infer("tiny-s", {"input": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(BadRequest, match="input is int64, the model takes float32"):
        rt.infer("tiny-s", {"input": np.zeros((1, 1, 8, 8), np.int64)})
    with pytest.raises(BadRequest, match=r"takes inputs \['input'\], got \['x'\]"):
        rt.infer("tiny-s", {"x": np.zeros((1, 1, 8, 8), np.float32)})
    with pytest.raises(ModelNotFound, match="loaded: tiny-s"):
        rt.infer("tiny-x", {"input": np.zeros((1, 1, 8, 8), np.float32)})
