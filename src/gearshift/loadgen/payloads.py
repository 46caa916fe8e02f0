"""The open-loop client's wire codec: pre-encoded KServe V2 request bodies, and the answer reader.

Every body uses the binary tensor extension: a compact JSON header of `header_length` bytes (sent
as `Inference-Header-Content-Length`) followed by the raw bytes of one input of batch 1. The
header asks for binary outputs and carries the request's deadline:
`parameters = {"deadline_ms": D, "binary_data_output": true}`. Encoding happens once, before a
run, so the sender only writes bytes. `parse_answer` reads what a record needs from an answer:
the JSON header, and the first output's bytes only when the request has a label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from gearshift.protocol import datatype_of
from gearshift.types import SERVED_AS, JSONObject, ServedAs
from gearshift.zoo.spec import DTYPES, InputSpec, PoolSpec

_NUMPY = {datatype_of(np.dtype(d)): np.dtype(d) for d in
          ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
           "float16", "float32", "float64")}
_INT_HIGH = {"uint8": 256}  # exclusive upper bound of random integer inputs; others: 100


@dataclass(frozen=True)
class Payload:
    """One request body. `label` is the expected class (None: unlabelled, correctness unknown)."""

    body: bytes
    header_length: int
    label: int | None = None


def _input_of(spec: PoolSpec | InputSpec) -> InputSpec:
    return spec.input if isinstance(spec, PoolSpec) else spec


def encode_payload(
    inp: InputSpec, x: np.ndarray, deadline_ms: float, label: int | None = None
) -> Payload:
    """Encode one item `x` (shape `inp.shape`, dtype `inp.dtype`) as a batch-1 binary request."""
    x = np.ascontiguousarray(x, dtype=np.dtype(inp.dtype)).reshape(1, *inp.shape)
    raw = x.tobytes()
    header = {
        "inputs": [{
            "name": inp.name, "shape": list(x.shape), "datatype": datatype_of(x.dtype),
            "parameters": {"binary_data_size": len(raw)},
        }],
        "parameters": {"deadline_ms": float(deadline_ms), "binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return Payload(head + raw, len(head), label)


def _check_deadline(deadline_ms: float) -> None:
    if not deadline_ms > 0 or deadline_ms == float("inf"):
        raise ValueError(f"deadline_ms must be a finite number > 0 ms, got {deadline_ms}")


def random_payloads(
    spec: PoolSpec | InputSpec, count: int, seed: int, deadline_ms: float
) -> list[Payload]:
    """`count` unlabelled bodies of seeded random input (standard normal for float inputs,
    integers in [0, 256) for uint8 and [0, 100) for other integer inputs)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    _check_deadline(deadline_ms)
    inp = _input_of(spec)
    rng = np.random.default_rng(seed)
    dtype = np.dtype(inp.dtype)
    shape = (count, *inp.shape)
    if dtype.kind == "f":
        xs = rng.standard_normal(shape).astype(dtype)
    else:
        xs = rng.integers(0, _INT_HIGH.get(inp.dtype, 100), size=shape).astype(dtype)
    return [encode_payload(inp, x, deadline_ms) for x in xs]


def labelled_payloads(
    spec: PoolSpec | InputSpec, images: np.ndarray, labels: np.ndarray, deadline_ms: float
) -> list[Payload]:
    """One body per item of `images` (shape (N, *input.shape), already preprocessed as the pool
    expects) with its integer class in `labels` (shape (N,)).

    Float images are cast to the input's float dtype; any other dtype mismatch (for example
    uint8 pixels for a float32 input) is an error, since it usually means preprocessing is missing.
    """
    _check_deadline(deadline_ms)
    inp = _input_of(spec)
    images, labels = np.asarray(images), np.asarray(labels)
    want = np.dtype(inp.dtype)
    if images.ndim != len(inp.shape) + 1 or list(images.shape[1:]) != inp.shape:
        raise ValueError(
            f"images have shape {images.shape}; expected (N, {', '.join(map(str, inp.shape))})"
        )
    if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be N = {images.shape[0]} integers, got shape {labels.shape} "
            f"of {labels.dtype}"
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty; give at least one labelled item")
    if images.dtype != want and not (images.dtype.kind == "f" and want.kind == "f"):
        raise ValueError(
            f"images are {images.dtype} but input {inp.name!r} is {want}; "
            "preprocess them as the pool spec's input.preprocessing says"
        )
    return [encode_payload(inp, x, deadline_ms, int(y)) for x, y in zip(images, labels, strict=True)]


@dataclass(frozen=True)
class ModelInfo:
    """What a load client needs from a server's model metadata (GET /v2/models/{model})."""

    input: InputSpec
    deadline_ms: float | None  # gearshift's default deadline; None from other servers


class _TensorMeta(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class _MetaParameters(BaseModel):
    deadline_ms: float | None = None


class _ModelMeta(BaseModel):
    """The part of KServe V2 model metadata a load client reads: exactly one input."""

    inputs: tuple[_TensorMeta]
    parameters: _MetaParameters | None = None


def model_info(meta: JSONObject) -> ModelInfo:
    """Read KServe V2 model metadata with one input (its batch dimension dropped)."""
    try:
        m = _ModelMeta.model_validate(meta)
        (tensor,) = m.inputs
        dtype = {datatype_of(np.dtype(d)): d for d in DTYPES}[tensor.datatype]
        inp = InputSpec(name=tensor.name, shape=tensor.shape[1:], dtype=dtype)
        deadline = m.parameters.deadline_ms if m.parameters else None
        return ModelInfo(inp, float(deadline) if deadline else None)
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(
            f"model metadata does not describe one input of a supported type ({exc!r})"
        ) from None


@dataclass(frozen=True)
class Answer:
    """What the client reads from one HTTP answer."""

    variant: str = ""
    queue_ms: float = 0.0  # 0 when the server did not say (as the simulator's dropped requests)
    service_ms: float = 0.0
    correct: bool | None = None
    error: str = ""
    served_as: ServedAs = ""  # '' when the server did not say (or said something else)


def parse_answer(status: int, body: bytes, header_length: int | None,
                 label: int | None) -> Answer:
    """Read an inference answer; never raises (an unreadable answer is reported in `error`)."""
    try:
        doc = json.loads(body if header_length is None else body[:header_length])
        if status != 200:
            return Answer(error=str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc))
        p = doc.get("parameters") or {}
        correct = None if label is None else _argmax(doc, body, header_length) == label
        role: ServedAs = next((r for r in SERVED_AS if r == p.get("served_as")), "")
        return Answer(str(p.get("variant", "")), float(p.get("queue_ms", 0.0)),
                      float(p.get("service_ms", 0.0)), correct, served_as=role)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        text = body[:200].decode("utf-8", "replace")
        return Answer(error=f"unreadable answer (HTTP {status}): {exc!r}: {text}")


def _argmax(doc: dict[str, Any], body: bytes, header_length: int | None) -> int:
    out = doc["outputs"][0]
    size = (out.get("parameters") or {}).get("binary_data_size")
    if size is None:
        return int(np.argmax(out["data"]))
    dtype = _NUMPY[out["datatype"]]
    if header_length is None or header_length + size > len(body):
        raise ValueError("binary output extends beyond the body")
    return int(np.argmax(np.frombuffer(body, dtype, size // dtype.itemsize, header_length)))
