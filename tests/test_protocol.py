"""The KServe V2 codec, byte for byte, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearshift.errors import BadRequest
from gearshift.protocol import decode_request, encode_response, parse_json


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


# ----- bad input: every one is a BadRequest that says what was wrong, never another exception --


def _one(**fields: object) -> bytes:
    tensor = {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0], **fields}
    return json.dumps({"inputs": [tensor]}).encode()


def _rejected(body: bytes, n: str | None = None, **kw: object) -> str:
    with pytest.raises(BadRequest) as info:
        decode_request(body, n, **kw)  # type: ignore[arg-type]
    return info.value.message


def test_a_million_entry_shape_is_refused_before_any_work() -> None:
    body = b'{"inputs":[{"name":"input","datatype":"FP32","data":[],"shape":[' + (
        b"2," * 1_000_000) + b"2]}]}"
    assert "dimensions" in _rejected(body)


@pytest.mark.parametrize("dims", [9, 65, 100])
def test_too_many_dimensions(dims: int) -> None:
    assert "dimensions" in _rejected(_one(shape=[1] * dims, data=[0.0]))


@pytest.mark.parametrize(("datatype", "value"), [
    ("UINT8", 256), ("UINT8", -1), ("INT8", 128), ("INT16", 1 << 15), ("INT32", 1 << 31),
    ("INT64", 1 << 63), ("INT64", -(1 << 63) - 1), ("UINT64", 1 << 64), ("UINT64", -1),
])
def test_integers_out_of_range(datatype: str, value: int) -> None:
    msg = _rejected(_one(shape=[1], datatype=datatype, data=[value]))
    assert "out of range" in msg and datatype in msg


def test_integer_of_more_than_4300_digits() -> None:
    body = _one(shape=[1]).replace(b"[0.0, 1.0]", b"[" + b"9" * 5000 + b"]")
    assert "digits" in _rejected(body)


def test_json_nested_100k_deep() -> None:
    assert "nested too deeply" in _rejected(b"[" * 100_000 + b"]" * 100_000)
    deep_data = _one(shape=[1]).replace(b"[0.0, 1.0]", b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in _rejected(deep_data)


@pytest.mark.parametrize("size", [8.0, -8, "8", True, None, [8], 1 << 70])
def test_binary_data_size_must_be_a_byte_count(size: object) -> None:
    header = json.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": size}}]}).encode()
    msg = _rejected(header + b"\0" * 8, str(len(header)))
    assert "binary_data_size" in msg


def test_binary_data_and_json_data_together_are_refused() -> None:
    header = json.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "FP32",
                                     "data": [1.0, 2.0],
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    assert "both `data` and `binary_data_size`" in _rejected(header + b"\0" * 8,
                                                             str(len(header)))


@pytest.mark.parametrize("n", ["-5", "0", "abc", "1e3", " 12", "1_0", "٣", "99999", ""])
def test_header_length_must_be_a_byte_count_within_the_body(n: str) -> None:
    msg = _rejected(_one(), n)
    assert "Inference-Header-Content-Length" in msg


@pytest.mark.parametrize("datatype", ["BYTES", "FP8", "fp32", "", "STRING"])
def test_unknown_datatypes(datatype: str) -> None:
    assert "datatype" in _rejected(_one(datatype=datatype))


@pytest.mark.parametrize("shape", [[1000000000000], [-1, 2], [1 << 40, 1 << 40], [1, -2]])
def test_negative_or_huge_dimensions(shape: list[int]) -> None:
    msg = _rejected(_one(shape=shape))
    assert "dimension" in msg or "elements" in msg


@pytest.mark.parametrize("shape", [[1.0, 2], ["1", 2], [True, 2], [None, 2]])
def test_dimensions_must_be_integers(shape: list[object]) -> None:
    assert "shape" in _rejected(_one(shape=shape))


@pytest.mark.parametrize("data", [[None, 1.0], [0.0, None], ["a", 1.0], [[0.0], 1.0],
                                  [{"x": 1}, 1.0], "0.0 1.0", 3.0])
def test_data_must_be_numbers(data: object) -> None:
    assert "input 'input'" in _rejected(_one(data=data))


def test_nan_and_infinity_are_refused() -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = _one().replace(b"0.0, 1.0", b"0.0, " + literal)
        assert "not valid JSON" in _rejected(body)
    assert "finite" in _rejected(_one().replace(b"0.0, 1.0", b"0.0, 1e999"))
    assert "finite" in _rejected(_one(datatype="FP16", data=[0.0, 1e6]))
    x = np.array([0.0, np.nan], np.float32)
    body, n = _binary_body(x)
    assert "finite" in _rejected(body, n)


def test_integers_must_not_have_fractions() -> None:
    assert "integers" in _rejected(_one(datatype="INT64", data=[1.5, 2]))


def test_duplicate_input_names_are_refused() -> None:
    t = {"name": "input", "shape": [1], "datatype": "FP32", "data": [0.0]}
    body = json.dumps({"inputs": [t, {**t, "data": [1.0]}]}).encode()
    assert "more than once" in _rejected(body)


def test_inputs_are_checked_against_the_declared_signature() -> None:
    from gearshift.protocol import InputSignature

    sig = InputSignature("input", "FP32", (2,))
    t = {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0]}
    assert decode_request(json.dumps({"inputs": [t]}).encode(), None, sig).inputs["input"].shape \
        == (1, 2)
    extra = {**t, "name": "other"}
    cases = [
        ({"inputs": [extra]}, "missing input 'input'"),
        ({"inputs": [t, extra]}, "unknown input"),
        ({"inputs": [{**t, "datatype": "FP64"}]}, "must be FP32"),
        ({"inputs": [{**t, "shape": [2, 1], "data": [0.0, 1.0]}]}, "must have shape [batch, 2]"),
        ({"inputs": [{**t, "shape": [0, 2], "data": []}]}, "must have shape [batch, 2]"),
        ({"inputs": [{**t, "shape": [1, 2, 1]}]}, "must have shape [batch, 2]"),
    ]
    for doc, match in cases:
        assert match in _rejected(json.dumps(doc).encode(), None, signature=sig), doc


def test_shape_and_data_length_must_agree() -> None:
    assert "values given for shape" in _rejected(_one(shape=[3]))
    assert "values given for shape" in _rejected(_one(shape=[1, 2], data=[[0.0, 1.0, 2.0]]))


@pytest.mark.parametrize("outputs", [[{"name": 5}], [{"name": "a"}, {"name": "a"}],
                                     [{"name": "a", "parameters": {"binary_data": "yes"}}]])
def test_requested_outputs_are_checked(outputs: list[object]) -> None:
    doc = json.loads(_one())
    doc["outputs"] = outputs
    assert "output" in _rejected(json.dumps(doc).encode())


def test_non_finite_outputs_are_written_as_strings() -> None:
    out = {"y": np.array([1.0, np.nan, np.inf, -np.inf], np.float32)}
    body, n = encode_response("m", None, out, set(), {})
    assert n is None
    assert b"NaN" not in body.replace(b'"NaN"', b"")
    assert json.loads(body)["outputs"][0]["data"] == [1.0, "NaN", "Infinity", "-Infinity"]


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20),
       st.sampled_from([b"", b" ", b"x", b",", b"]", b"NaN", b"\xff"]))
def test_the_fast_parser_accepts_and_refuses_what_the_standard_one_does(value, tail) -> None:
    """`parse_json` parses with msgspec first and falls back to `json` on a refusal: the two
    must agree on every document, valid or not (NaN and Infinity are refused: not JSON)."""
    import json

    def refuse(name: str) -> None:
        raise ValueError(name)

    body = json.dumps(value).encode() + tail
    try:
        expected = json.loads(body, parse_constant=refuse)
    except ValueError:
        with pytest.raises(BadRequest, match="not valid JSON"):
            parse_json(body)
        return
    assert parse_json(body) == expected
