"""A numpy reference forward pass for the tiny MLP models, read from the ONNX file itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def mlp_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of the `gearshift.zoo.tiny` MLP at `path` for input batch `x`."""
    model = onnx.load(str(path))
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = len([k for k in w if k.startswith("w")])
    h = x.reshape(x.shape[0], -1).astype(np.float64)
    for i in range(layers):
        h = h @ w[f"w{i}"] + w[f"b{i}"]
        if i < layers - 1:
            h = np.maximum(h, 0.0)
    return h
