"""The KServe V2 codec, byte for byte, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gearshift.errors import BadRequest
from gearshift.protocol import decode_request, encode_response


def _binary_body(x: np.ndarray, params: dict | None = None) -> tuple[bytes, str]:
    header = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": params or {}}).encode()
    return header + x.tobytes(), str(len(header))


def test_binary_and_json_inputs_decode_to_the_same_array() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    body, n = _binary_body(x, {"binary_data_output": True, "deadline_ms": 5})
    req = decode_request(body, n)
    np.testing.assert_array_equal(req.inputs["input"], x)
    assert req.binary_outputs is True and req.parameters["deadline_ms"] == 5
    nested = {"inputs": [{"name": "input", "shape": [2, 3, 4], "datatype": "FP32",
                          "data": x.tolist()}], "outputs": [{"name": "logits"}]}
    req2 = decode_request(json.dumps(nested).encode(), None)
    np.testing.assert_array_equal(req2.inputs["input"], x)
    assert req2.outputs == ["logits"] and req2.binary_outputs == set()


def test_response_binary_layout() -> None:
    out = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7], np.int64)}
    body, n = encode_response("m", "42", out, {"a"}, {"variant": "v"})
    assert n is not None
    head = json.loads(body[:n])
    assert head["id"] == "42" and head["parameters"] == {"variant": "v"}
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 24
    assert head["outputs"][1]["data"] == [7]
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float32).reshape(2, 3), out["a"])
    body, n = encode_response("m", None, out, set(), {})
    assert n is None and "id" not in json.loads(body)


@pytest.mark.parametrize(
    ("body", "n", "match"),
    [
        (b'{"inputs":[{"name":"input","shape":[2],"datatype":"FP32",'
         b'"parameters":{"binary_data_size":8}}]}' + b"\0" * 4, "94", "body ends before"),
        (b'{"inputs":[{"name":"input","shape":[1],"datatype":"FP32",'
         b'"parameters":{"binary_data_size":8}}]}' + b"\0" * 8, "94",
         "does not match shape"),
        (b'{"inputs":[{"name":"input","shape":[1],"datatype":"FP32"}]}', None,
         "neither `data` nor"),
        (b'{"inputs":[{"name":"input","shape":[2],"datatype":"FP32","data":["a","b"]}]}', None,
         "data is not FP32"),
        (b'{"inputs":[{"name":"input","shape":[-1],"datatype":"FP32","data":[]}]}', None,
         "negative dimension"),
        (b'{"inputs":[{"name":"input","datatype":"FP32","data":[1]}]}', None, "shape"),
        (b"{}", "x", "not a number"),
    ],
)
def test_malformed_requests_say_what_is_wrong(body: bytes, n: str | None, match: str) -> None:
    if n is not None and n.isdigit():
        n = str(body.index(b"}]}") + 3)
    with pytest.raises(BadRequest, match=match):
        decode_request(body, n)


def test_trailing_bytes_are_refused() -> None:
    x = np.zeros(2, np.float32)
    body, n = _binary_body(x)
    with pytest.raises(BadRequest, match="beyond the declared"):
        decode_request(body + b"junk", n)


def test_decompression_is_bounded() -> None:
    import gzip
    import zlib

    from gearshift.errors import PayloadTooLarge
    from gearshift.protocol import decompress

    bomb = gzip.compress(b"\0" * (10 << 20))  # 10 MB of zeros in ~10 kB
    with pytest.raises(PayloadTooLarge, match="decompressed request body exceeds"):
        decompress(bomb, "gzip", 1 << 20)
    assert decompress(zlib.compress(b"abc"), "Deflate", 100) == b"abc"
    assert decompress(b"raw", None, 100) == b"raw"
    with pytest.raises(BadRequest, match="not valid gzip"):
        decompress(b"not gzip", "gzip", 100)
