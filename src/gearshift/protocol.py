"""KServe V2 / Open Inference Protocol wire format, with the binary tensor data extension.

Pure codec: bytes and headers in, numpy tensors and parameters out, and back. No web framework.
A request body is either JSON, or (binary extension) a JSON header of
`Inference-Header-Content-Length` bytes followed by the raw bytes of every input that declares
`parameters.binary_data_size`, in input order. Responses use binary outputs when the request
asks for them (`parameters.binary_data_output`, or `binary_data` on a requested output), as
`tritonclient` does by default.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gearshift.errors import BadRequest, PayloadTooLarge

HEADER_LENGTH = "inference-header-content-length"

_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def datatype_of(dtype: np.dtype | str) -> str:
    return _NAMES[np.dtype(dtype)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class TensorIn(_Wire):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class OutputIn(_Wire):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class RequestIn(_Wire):
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorIn] = Field(min_length=1)
    outputs: list[OutputIn] | None = None


@dataclass(frozen=True)
class DecodedRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any]
    outputs: list[str] | None  # None: every output
    binary_outputs: set[str] | bool  # True: all outputs binary


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo `Content-Encoding` (gzip or deflate), refusing output beyond `limit` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding} data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} B")
    return out


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    """Parse a JSON or binary-extension request body into numpy inputs."""
    json_part, binary = _split(body, header_length)
    try:
        req = RequestIn.model_validate(json.loads(json_part))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request header is not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"malformed inference request: {where}: {first['msg']}") from None
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for t in req.inputs:
        arr, offset = _tensor(t, binary, offset)
        inputs[t.name] = arr
    if offset != len(binary):
        raise BadRequest(f"body has {len(binary) - offset} bytes beyond the declared binary data")
    return DecodedRequest(req.id, inputs, req.parameters, *_outputs(req))


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length {header_length!r} is not a number")
    if not 0 < n <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length {n} exceeds the body ({len(body)} B)")
    return body[:n], body[n:]


def _tensor(t: TensorIn, binary: bytes, offset: int) -> tuple[np.ndarray, int]:
    if t.datatype not in _DTYPES:
        raise BadRequest(
            f"input {t.name!r}: datatype {t.datatype!r} is not supported; use one of "
            f"{', '.join(_DTYPES)}"
        )
    dtype = _DTYPES[t.datatype]
    if any(d < 0 for d in t.shape):
        raise BadRequest(f"input {t.name!r}: shape {t.shape} has a negative dimension")
    count = math.prod(t.shape)
    size = t.parameters.get("binary_data_size")
    if size is not None:
        if size != count * dtype.itemsize:
            raise BadRequest(
                f"input {t.name!r}: binary_data_size {size} B does not match shape {t.shape} "
                f"of {t.datatype} ({count * dtype.itemsize} B)"
            )
        if offset + size > len(binary):
            raise BadRequest(f"input {t.name!r}: body ends before its {size} B of binary data")
        arr = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(t.shape)
        return arr, offset + size
    if t.data is None:
        raise BadRequest(f"input {t.name!r} has neither `data` nor `binary_data_size`")
    try:
        arr = np.asarray(t.data, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"input {t.name!r}: data is not {t.datatype}: {exc}") from None
    if arr.size != count:
        raise BadRequest(f"input {t.name!r}: {arr.size} values given for shape {t.shape}")
    return arr.reshape(t.shape), offset


def _outputs(req: RequestIn) -> tuple[list[str] | None, set[str] | bool]:
    all_binary = bool(req.parameters.get("binary_data_output", False))
    if req.outputs is None:
        return None, all_binary
    names = [o.name for o in req.outputs]
    binary = {o.name for o in req.outputs if o.parameters.get("binary_data", all_binary)}
    return names, binary


def encode_response(
    model_name: str,
    request_id: str | None,
    outputs: dict[str, np.ndarray],
    binary: set[str] | bool,
    parameters: dict[str, Any],
) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header's length."""
    entries, chunks = [], []
    for name, arr in outputs.items():
        arr = np.ascontiguousarray(arr)
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(arr.dtype),
                                 "shape": list(arr.shape)}
        if binary is True or (isinstance(binary, set) and name in binary):
            raw = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "outputs": entries, "parameters": parameters}
    if request_id is not None:
        doc["id"] = request_id
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
