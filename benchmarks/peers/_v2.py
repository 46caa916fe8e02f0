"""What every peer's handler shares: read a KServe V2 JSON request, run ONNX Runtime, answer.

Kept dependency-free beyond numpy and onnxruntime so each peer's venv can import it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnxruntime as ort

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def session(path: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def infer(sess: ort.InferenceSession, model: str, body: bytes,
          header_length: str | None = None) -> tuple[int, bytes]:
    """(status, JSON body) for one V2 request body: JSON tensors, or with `header_length`
    (the `Inference-Header-Content-Length` header) the binary tensor extension's JSON header
    followed by each input's raw bytes (`parameters.binary_data_size`)."""
    try:
        cut = int(header_length) if header_length else len(body)
        doc = json.loads(body[:cut])
        feeds, offset = {}, cut
        for t in doc["inputs"]:
            dtype = DTYPES[t["datatype"]]
            size = (t.get("parameters") or {}).get("binary_data_size")
            if size is None:
                feeds[t["name"]] = np.asarray(t["data"], dtype=dtype).reshape(t["shape"])
            else:
                feeds[t["name"]] = np.frombuffer(body[offset:offset + size],
                                                 dtype=dtype).reshape(t["shape"])
                offset += size
        outs = sess.run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - a peer's floor: any bad input is a 400
        return 400, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
    names = [o.name for o in sess.get_outputs()]
    answer: dict[str, Any] = {"model_name": model, "outputs": [
        {"name": n, "shape": list(o.shape), "datatype": "FP32",
         "data": np.asarray(o, dtype=np.float32).ravel().tolist()} for n, o in zip(names, outs)]}
    return 200, json.dumps(answer).encode()
