"""Tiny ONNX classifiers built with `onnx.helper` alone (no torch): for tests, demos and benchmarks.

Each variant is an MLP over a flattened input: `depth` hidden layers of `width` units, ReLU,
then `classes` logits. Weights come from a seeded generator, so the same arguments build the
same file. Cost grows with depth x width^2, so a family of them has a real latency spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gearshift.types import AccuracyKind
from gearshift.zoo.spec import Accuracy, InputSpec, PoolSpec, VariantSpec, dump_pool_spec


@dataclass(frozen=True)
class TinySpec:
    """`conv`: a stack of `depth` 3x3 convolutions of `width` channels (input [1, H, W]) instead
    of an MLP: compute-bound, so its service time is milliseconds with a file of kilobytes."""

    name: str
    depth: int
    width: int
    accuracy: float
    conv: bool = False


DEFAULT_FAMILY = (
    TinySpec("tiny-s", depth=1, width=32, accuracy=0.60),
    TinySpec("tiny-m", depth=2, width=128, accuracy=0.70),
    TinySpec("tiny-l", depth=3, width=384, accuracy=0.80),
)


def build_mlp(
    path: Path,
    input_shape: tuple[int, ...],
    depth: int,
    width: int,
    classes: int = 10,
    seed: int = 0,
    input_name: str = "input",
    output_name: str = "logits",
) -> Path:
    """Write an MLP ONNX model with a dynamic batch dimension; returns `path`."""
    rng = np.random.default_rng(seed)
    features = prod(input_shape)
    nodes = [helper.make_node("Flatten", [input_name], ["h0"], axis=1)]
    inits = []
    fan_in, cur = features, "h0"
    for layer in range(depth + 1):
        out_dim = classes if layer == depth else width
        w = (rng.standard_normal((fan_in, out_dim)) / np.sqrt(fan_in)).astype(np.float32)
        b = (0.01 * rng.standard_normal(out_dim)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{layer}"), numpy_helper.from_array(b, f"b{layer}")]
        mm, add = f"mm{layer}", (output_name if layer == depth else f"a{layer}")
        nodes.append(helper.make_node("MatMul", [cur, f"w{layer}"], [mm]))
        nodes.append(helper.make_node("Add", [mm, f"b{layer}"], [add]))
        if layer < depth:
            nodes.append(helper.make_node("Relu", [add], [f"h{layer + 1}"]))
            cur = f"h{layer + 1}"
        fan_in = out_dim
    return _save(path, f"mlp_d{depth}_w{width}", nodes, inits, (input_name, input_shape),
                 (output_name, classes))


def build_convnet(
    path: Path,
    input_shape: tuple[int, int, int],
    depth: int,
    channels: int,
    classes: int = 10,
    seed: int = 0,
    input_name: str = "input",
    output_name: str = "logits",
) -> Path:
    """Write a CNN ONNX model (`depth` 3x3 same-padded convolutions of `channels` channels with
    ReLU, global average pooling, a linear layer) with a dynamic batch dimension."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    cur, fan_in = input_name, input_shape[0]
    for layer in range(depth):
        w = (rng.standard_normal((channels, fan_in, 3, 3)) / np.sqrt(9 * fan_in))
        inits += [numpy_helper.from_array(w.astype(np.float32), f"k{layer}"),
                  numpy_helper.from_array(np.zeros(channels, np.float32), f"c{layer}")]
        nodes += [helper.make_node("Conv", [cur, f"k{layer}", f"c{layer}"], [f"v{layer}"],
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"v{layer}"], [f"r{layer}"])]
        cur, fan_in = f"r{layer}", channels
    w = (rng.standard_normal((fan_in, classes)) / np.sqrt(fan_in)).astype(np.float32)
    inits += [numpy_helper.from_array(w, "wf"),
              numpy_helper.from_array(np.zeros(classes, np.float32), "bf")]
    nodes += [helper.make_node("GlobalAveragePool", [cur], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "wf", "bf"], [output_name])]
    return _save(path, f"cnn_d{depth}_c{channels}", nodes, inits, (input_name, input_shape),
                 (output_name, classes))


def _save(path: Path, name: str, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
          inp: tuple[str, tuple[int, ...]], out: tuple[str, int]) -> Path:
    """Check and write a float32 graph with a dynamic batch dimension; returns `path`."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(inp[0], TensorProto.FLOAT, ["batch", *inp[1]])],
        [helper.make_tensor_value_info(out[0], TensorProto.FLOAT, ["batch", out[1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_tiny_pool(
    out: Path,
    family: tuple[TinySpec, ...] = DEFAULT_FAMILY,
    input_shape: tuple[int, ...] = (1, 8, 8),
    application: str = "tiny",
    deadline_ms: float = 50.0,
) -> Path:
    """Build every variant of `family` into `out` and write `out/pool.yaml`; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    variants = []
    for i, t in enumerate(family):
        if t.conv:
            if len(input_shape) != 3:
                raise ValueError(f"a convolutional variant needs an input [1, H, W], "
                                 f"got {list(input_shape)}")
            c, h, w = input_shape
            build_convnet(out / f"{t.name}.onnx", (c, h, w), t.depth, t.width, seed=i)
        else:
            build_mlp(out / f"{t.name}.onnx", input_shape, t.depth, t.width, seed=i)
        variants.append(
            VariantSpec(
                name=t.name,
                path=f"{t.name}.onnx",
                accuracy=Accuracy(
                    value=t.accuracy,
                    kind=AccuracyKind.DECLARED,
                    metric="top1",
                    source="synthetic: tiny random-weight MLP, figure chosen for testing",
                ),
                description=(f"CNN depth {t.depth} channels {t.width}" if t.conv else
                         f"MLP depth {t.depth} width {t.width}") + ", random weights",
            )
        )
    spec = PoolSpec(
        application=application,
        input=InputSpec(name="input", shape=list(input_shape), dtype="float32"),
        deadline_ms=deadline_ms,
        variants=variants,
    )
    dump_pool_spec(spec, out / "pool.yaml")
    return out / "pool.yaml"
