"""Malformed requests, generated, sent to a live server over real HTTP: every one is a 4xx.

`GEARSHIFT_FUZZ_CASES` sets how many (default 3000, well under a minute on two cores); for a
larger run by hand:
    GEARSHIFT_FUZZ_CASES=50000 .venv/bin/python -m pytest tests/test_fuzz.py -q -x
Each case is invalid by construction (the tiny pool takes one input "input", FP32, shape
[batch, 1, 8, 8]), so a 2xx is a failure as much as a 5xx or a hang (client timeouts).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import string
import time
import urllib.parse
import zlib
from collections import Counter
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gearshift.errors import SpecError
from gearshift.serving.server import ServerSettings
from gearshift.types import Allocation, Decision
from tests.live import serving
from tests.reference import mlp_reference
from tests.servers import free_port

pytestmark = pytest.mark.slow

CASES = int(os.environ.get("GEARSHIFT_FUZZ_CASES", "3000"))
ITEM = [1, 8, 8]
MODELS = {"tiny", "tiny-s", "tiny-m", "tiny-l"}
Case = tuple[str, str, dict[str, str], bytes, str]  # method, path, headers, body, kind


def _tensor(**over: Any) -> dict[str, Any]:
    return {"name": "input", "shape": [1, *ITEM], "datatype": "FP32", "data": [0.5] * 64,
            **over}


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _post(body: bytes, kind: str, headers: dict[str, str] | None = None,
          path: str = "/v2/models/tiny/infer") -> Case:
    return ("POST", path, headers or {"Content-Type": "application/json"}, body, kind)


header_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.+,;=", max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=8))
json_values = st.recursive(scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)), max_leaves=12)
bad_shapes = st.lists(st.integers(-(1 << 70), 1 << 70), max_size=12).filter(
    lambda s: not (len(s) == 4 and s[1:] == ITEM and 1 <= s[0]))
bad_dims = st.lists(st.one_of(st.floats(), st.text(max_size=3), st.none(), st.booleans(),
                              st.lists(st.integers(), max_size=2)), min_size=1, max_size=4)
bad_data = st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=130).filter(
        lambda d: len(d) != 64),
    st.lists(st.one_of(st.none(), st.text(max_size=3), st.booleans(),
                       st.integers(1 << 64, 1 << 80), st.just([])), min_size=64, max_size=64),
    json_values.filter(lambda v: not isinstance(v, list)),
)
bad_deadlines = st.one_of(
    st.integers(max_value=0), st.integers(min_value=3_600_001), st.just(2 ** 1024),
    st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=3.6e6 + 1),
    st.text(max_size=10), st.booleans(), st.none(), st.lists(st.integers(), max_size=2))


@st.composite
def tensor_faults(draw: st.DrawFn) -> Case:
    which = draw(st.sampled_from(["shape", "dims", "datatype", "name", "data", "deadline",
                                  "duplicate", "extra", "missing", "outputs", "id", "flag"]))
    if which == "shape":
        doc = {"inputs": [_tensor(shape=draw(bad_shapes))]}
    elif which == "dims":
        doc = {"inputs": [_tensor(shape=draw(bad_dims))]}
    elif which == "datatype":
        dt = draw(st.one_of(st.sampled_from(["BYTES", "FP64", "INT64", "UINT8", "BOOL", "FP16",
                                             "fp32", ""]), st.text(max_size=10)))
        doc = {"inputs": [_tensor(datatype=dt)]} if dt != "FP32" else {"inputs": []}
    elif which == "name":
        name = draw(st.text(max_size=20).filter(lambda n: n != "input"))
        doc = {"inputs": [_tensor(name=name)]}
    elif which == "data":
        doc = {"inputs": [_tensor(data=draw(bad_data))]}
    elif which == "deadline":
        doc = {"inputs": [_tensor()], "parameters": {"deadline_ms": draw(bad_deadlines)}}
    elif which == "duplicate":
        doc = {"inputs": [_tensor(), _tensor()]}
    elif which == "extra":
        doc = {"inputs": [_tensor(), _tensor(name=draw(st.text(max_size=8).filter(
            lambda n: n != "input")))]}
    elif which == "missing":
        doc = {"inputs": draw(st.sampled_from([[], None, {}, "input", [None], [{}]]))}
    elif which == "outputs":
        outs = draw(st.sampled_from([
            [{"name": "nope"}], [{"name": "logits"}, {"name": "logits"}], [{"name": 3}],
            [{"name": "logits", "parameters": {"binary_data": "yes"}}], "logits", [None]]))
        doc = {"inputs": [_tensor()], "outputs": outs}
    elif which == "id":
        doc = {"id": draw(st.one_of(st.integers(), st.lists(st.text(), max_size=2),
                                    st.booleans())), "inputs": [_tensor()]}
    else:
        doc = {"inputs": [_tensor()], "parameters": {"binary_data_output": draw(st.one_of(
            st.text(max_size=5), st.integers(), st.none()))}}
    return _post(_json(doc), which)


@st.composite
def binary_faults(draw: st.DrawFn) -> Case:
    size = draw(st.one_of(st.integers(-(1 << 40), 1 << 40).filter(lambda n: n != 256),
                          st.floats(), st.text(max_size=4), st.none(), st.booleans(),
                          st.just(256)))
    payload = draw(st.binary(max_size=300))
    if type(size) is int and size == 256 and len(payload) == 256:
        payload = np.full(64, np.nan, np.float32).tobytes()  # right size: invalid values
    head = _json({"inputs": [{"name": "input", "shape": [1, *ITEM], "datatype": "FP32",
                              "parameters": {"binary_data_size": size}}]})
    n = draw(st.one_of(st.just(str(len(head))), header_text,
                       st.integers(-5, len(head) + len(payload) + 5).map(str)))
    body = head + payload
    if n == str(len(head)) and size == 256 and len(payload) == 256:
        payload = payload[:-1]  # never exactly right
        body = head + payload
    return _post(body, "binary", {"Inference-Header-Content-Length": n,
                                  "Content-Type": "application/octet-stream"})


@st.composite
def body_faults(draw: st.DrawFn) -> Case:
    which = draw(st.sampled_from(["bytes", "json", "deep", "digits", "constant", "gzip",
                                  "encoding", "truncated"]))
    if which == "bytes":
        body = draw(st.binary(max_size=200))
    elif which == "json":
        body = _json(draw(json_values))
    elif which == "deep":
        depth = draw(st.integers(500, 200_000))
        body = draw(st.sampled_from([b"[", b'{"a":'])) * depth
    elif which == "digits":
        body = b'{"inputs":[{"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":[' + (
            b"7" * draw(st.integers(4301, 20000))) + b"]}]}"
    elif which == "constant":
        lit = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
        body = _json({"inputs": [_tensor()]}).replace(b"0.5", lit, 1)
    elif which == "gzip":
        return _post(gzip.compress(draw(st.binary(max_size=100))), which,
                     {"Content-Encoding": "gzip"})
    elif which == "encoding":
        enc = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10)
                   .filter(lambda e: e not in ("identity", "gzip", "deflate")))
        return _post(_json({"inputs": [_tensor()]}), which, {"Content-Encoding": enc})
    else:
        cut = gzip.compress(_json({"inputs": [_tensor()]}))
        return _post(cut[:draw(st.integers(1, len(cut) - 9))], which,
                     {"Content-Encoding": "gzip"})
    return _post(body, which)


@st.composite
def path_faults(draw: st.DrawFn) -> Case:
    name = draw(st.text(min_size=1, max_size=30).filter(lambda n: n not in MODELS))
    quoted = urllib.parse.quote(name, safe="")
    which = draw(st.sampled_from(["model", "version", "method", "other"]))
    body = _json({"inputs": [_tensor()]})
    if which == "model":
        return _post(body, which, path=f"/v2/models/{quoted}/infer")
    if which == "version":
        v = quoted if name != "1" else "2"
        return _post(body, which, path=f"/v2/models/tiny/versions/{v}/infer")
    if which == "method":
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]))
        return (method, "/v2/models/tiny/infer", {}, body, which)
    return ("GET", f"/v2/{quoted}/x", {}, b"", which)


@st.composite
def controller_faults(draw: st.DrawFn) -> Case:
    body = draw(st.one_of(st.binary(max_size=100), json_values.map(_json),
                          st.integers(1000, 100_000).map(lambda d: b"[" * d)))
    return ("PUT", "/gearshift/controller", {}, body, "controller")


@st.composite
def nonfinite_faults(draw: st.DrawFn) -> Case:
    """A binary request right in every way but one: a NaN or infinity among its values (the
    protocol carries them as IEEE FP32; this server's rule refuses non-finite inputs)."""
    x = np.full(64 * draw(st.integers(1, 3)), 0.5, np.float32)
    bad = draw(st.lists(st.integers(0, len(x) - 1), min_size=1, max_size=4))
    x[bad] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    payload = x.tobytes()
    head = _json({"inputs": [{"name": "input", "shape": [len(x) // 64, *ITEM],
                              "datatype": "FP32",
                              "parameters": {"binary_data_size": len(payload)}}]})
    return _post(head + payload, "nonfinite", {"Inference-Header-Content-Length": str(len(head)),
                                               "Content-Type": "application/octet-stream"})


malformed = st.one_of(tensor_faults(), binary_faults(), body_faults(), path_faults(),
                      controller_faults(), nonfinite_faults())


def _raw(port: int, data: bytes, half_close: bool = False) -> bytes:
    """Everything the server answers on one connection until it closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


RAW = [
    b"GARBAGE\r\n\r\n",
    b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    (b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
     b"Content-Length: 7\r\n\r\nhello"),
    (b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
    b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n",
    b"GET /v2/health/ready HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /v2/health/ready HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    b"GET /v2/health/ready HTTP/1.1\r\nConnection: close\r\n\r\n",
]


def _big_cases(limit: int) -> list[tuple[str, dict[str, str], Any, int, str]]:
    """(kind, headers, body, status, text): bodies at and past `max_body_bytes`, declared or
    streamed, and compressed bodies that inflate past it (a bomb: 64 MiB of zeros in ~64 KiB)."""
    over = b" " * (limit + 1)

    def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(5):
            yield b" " * (limit // 4)

    zeros = b"\0" * (64 << 20)
    return [
        ("declared", {"Content-Type": "application/json"}, over, 413, "exceeds the limit"),
        ("streamed", {"Content-Type": "application/json"}, chunks(), 413, "exceeds the limit"),
        ("gzip bomb", {"Content-Encoding": "gzip"}, gzip.compress(zeros, 9), 413,
         "decompressed request body exceeds"),
        ("deflate bomb", {"Content-Encoding": "deflate"}, zlib.compress(zeros, 9), 413,
         "decompressed request body exceeds"),
        ("gzip just over", {"Content-Encoding": "gzip"}, gzip.compress(over), 413,
         "decompressed request body exceeds"),
    ]


def _valid_raw(port: int, items: int, model: str = "tiny") -> tuple[bytes, bytes]:
    """(head, body) of a valid binary request for `items` items, as raw HTTP."""
    payload = np.full((items, *ITEM), 0.25, np.float32).tobytes()
    header = _json({"inputs": [{"name": "input", "shape": [items, *ITEM], "datatype": "FP32",
                                "parameters": {"binary_data_size": len(payload)}}],
                    "parameters": {"deadline_ms": 60000}})
    body = header + payload
    head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def _leave_while_held(port: int, client: httpx.Client, n: int, items: int) -> int:
    """Send `n` valid big requests, close every connection once the server holds one (queued or
    computing); returns how many were held (queued + in flight) when they left. On tiny-l
    (~0.2 s for 15000 items on one thread) so that they are still held when the reset lands."""
    head, body = _valid_raw(port, items, "tiny-l")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    held = 0
    try:
        for s_ in socks:
            s_.sendall(head + body)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            st_ = client.get("/gearshift/status").json()
            held = st_["queue_length"] + st_["in_flight"]
            if held >= 2:
                break
            time.sleep(0.002)
    finally:
        for s_ in socks:
            s_.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            s_.close()  # a reset: the client is gone at once
    return held


def _no_policy(name: str) -> Any:
    raise SpecError(f"no policy {name!r} here")


def test_malformed_requests_get_one_4xx_each_and_the_server_goes_on(tiny_spec) -> None:
    first = Decision("tiny-s", Allocation(2, 1))
    port = free_port()
    config = ServerSettings(port=port, period_s=3600.0, body_timeout_s=5.0,
                            max_body_bytes=4 << 20)
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    with serving(tiny_spec, first, config, _no_policy) as (url, _), httpx.Client(
            base_url=f"http://{url}", timeout=httpx.Timeout(20.0)) as client:

        @settings(max_examples=CASES, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(case=malformed)
        def one(case: Case) -> None:
            method, path, headers, body, kind = case
            kinds[kind] += 1
            r = client.request(method, path, headers=headers, content=body)
            assert 400 <= r.status_code < 500, (kind, path, headers, body[:200], r.text)
            assert r.headers["content-type"].startswith("application/json"), r.text
            assert r.json()["error"], r.text

        one()
        for data in RAW:  # below HTTP: one answer each, 4xx, then the connection closes
            answer = _raw(port, data)
            assert answer.count(b"HTTP/1.1 ") == 1, (data[:80], answer[:200])
            assert answer[9:10] == b"4", (data[:80], answer[:200])
        cut_off = [(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"inputs\":"), b"POST /v2/models/tin"]
        for data in cut_off:
            _raw(port, data, half_close=True)  # cut off mid-body or mid-head: the client left
        for kind, headers, body, status, text in _big_cases(config.max_body_bytes):
            r = client.post("/v2/models/tiny/infer", headers=headers, content=body)
            assert r.status_code == status and text in r.json()["error"], (kind, r.text)
            kinds[kind] += 1
        before = client.get("/gearshift/status").json()
        head, body = _valid_raw(port, 4)
        rng = np.random.default_rng(3)
        for cut in [0, 1, *rng.integers(2, len(body), 6).tolist()]:  # valid, closed mid-body
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s_:
                s_.sendall(head + body[:cut])
            kinds["closed mid-body"] += 1
        held = [_leave_while_held(port, client, 6, 15000) for _ in range(3)]
        kinds["left while held"] += 18
        end = time.monotonic() + 10
        while time.monotonic() < end:  # what they left is skipped or finished: nothing stuck
            after = client.get("/gearshift/status").json()
            if after["queue_length"] == after["in_flight"] == 0:
                break
            time.sleep(0.05)
        assert after["queue_length"] == after["in_flight"] == 0, after
        assert after["disconnects"] - before["disconnects"] >= 1, (held, after)
        assert after["failed"] == before["failed"] and after["expired"] == before["expired"]
        x = np.random.default_rng(1).standard_normal((2, *ITEM)).astype(np.float32)
        ok = client.post("/v2/models/tiny/infer", json={"inputs": [
            _tensor(shape=list(x.shape), data=x.ravel().tolist())]})
        assert ok.status_code == 200, ok.text
        got = np.array(ok.json()["outputs"][0]["data"], np.float32).reshape(2, 10)
        np.testing.assert_allclose(got, mlp_reference(tiny_spec.model_path("tiny-s"), x),
                                   rtol=1e-4, atol=1e-4)
        assert client.get("/v2/health/ready").status_code == 200
        st_ = client.get("/gearshift/status").json()
        assert st_["failed"] == 0 and st_["worker_restarts"] == 0
    elapsed = time.monotonic() - started
    total = sum(kinds.values())
    print(f"\nfuzz: {total} malformed requests in {elapsed:.1f} s: {dict(sorted(kinds.items()))}"
          f"; held when their clients left: {held}, disconnects counted: "
          f"{after['disconnects'] - before['disconnects']}")
    assert total >= min(CASES, 1000)  # hypothesis ran as many as asked (it may stop early)
