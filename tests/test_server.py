"""A real server on 127.0.0.1 spoken to by tritonclient, a KServe V2 client no one here wrote."""

from __future__ import annotations

import gzip
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as tc
from tritonclient.utils import InferenceServerException

from gearshift.serving.server import ServerSettings
from gearshift.types import Allocation, Decision
from tests.reference import mlp_reference
from tests.servers import free_port, running_server, status

pytestmark = pytest.mark.slow


def _infer(client: tc.InferenceServerClient, model: str, x: np.ndarray, binary: bool,
           **kw: object) -> tc.InferResult:
    inp = tc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = None if binary else [tc.InferRequestedOutput("logits", binary_data=False)]
    return client.infer(model, [inp], outputs=outputs, **kw)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_gets_correct_results(tiny_spec, binary: bool) -> None:
    with running_server(tiny_spec) as (url, _):
        client = tc.InferenceServerClient(url)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("tiny") and client.is_model_ready("tiny-l")
        meta = client.get_model_metadata("tiny")
        assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
        for model in ("tiny", "tiny-m", "tiny-l"):
            r = _infer(client, model, x, binary)
            params = r.get_response()["parameters"]
            want = params["variant"] if model == "tiny" else model
            assert params["variant"] == want
            assert params["queue_ms"] >= 0 and params["service_ms"] > 0
            assert params["deadline_ms"] == tiny_spec.deadline_ms
            np.testing.assert_allclose(r.as_numpy("logits"),
                                       mlp_reference(tiny_spec.model_path(want), x),
                                       rtol=1e-4, atol=1e-4)


def test_per_request_deadline_and_compressed_request(tiny_spec) -> None:
    with running_server(tiny_spec) as (url, _):
        client = tc.InferenceServerClient(url)
        x = np.zeros((1, 1, 8, 8), np.float32)
        r = _infer(client, "tiny", x, True, parameters={"deadline_ms": 1234},
                   request_compression_algorithm="gzip")
        assert r.get_response()["parameters"]["deadline_ms"] == 1234
        with pytest.raises(InferenceServerException, match="deadline_ms must be a positive"):
            _infer(client, "tiny", x, True, parameters={"deadline_ms": -5})


def test_errors_carry_the_protocol_body_and_status(tiny_spec) -> None:
    with running_server(tiny_spec) as (url, _):
        base = f"http://{url}/v2/models"
        ok = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                          "data": [0.0] * 64}]}
        cases = [
            ("tiny", b"{not json", {}, 400, "not valid JSON"),
            ("tiny", json.dumps({"inputs": []}).encode(), {}, 400, "inputs"),
            ("resnet9", json.dumps(ok).encode(), {}, 404, "unknown model 'resnet9'"),
            ("tiny", json.dumps({"inputs": [{**ok["inputs"][0], "shape": [2, 1, 8, 8]}]}).encode(),
             {}, 400, "64 values given for shape"),
            ("tiny", json.dumps({"inputs": [{**ok["inputs"][0], "datatype": "BYTES"}]}).encode(),
             {}, 400, "datatype 'BYTES' is not supported"),
            ("tiny", json.dumps(ok).encode(), {"Inference-Header-Content-Length": "99999"}, 400,
             "exceeds the body"),
            ("tiny", b"x" * 10, {"Content-Encoding": "br"}, 400, "not supported"),
        ]
        for model, body, headers, code, text in cases:
            r = httpx.post(f"{base}/{model}/infer", content=body, headers=headers, timeout=10)
            assert r.status_code == code, (model, r.text)
            assert text in r.json()["error"], r.text
        r = httpx.post(f"{base}/tiny/infer", content=gzip.compress(json.dumps(ok).encode()),
                       headers={"Content-Encoding": "gzip"}, timeout=10)
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 10]
        assert httpx.get(f"http://{url}/v2/nothing", timeout=5).json()["error"]


def test_too_large_body_is_413(tiny_spec) -> None:
    settings = ServerSettings(port=free_port(), max_body_bytes=1000)
    with running_server(tiny_spec, settings=settings) as (url, _):
        r = httpx.post(f"http://{url}/v2/models/tiny/infer", content=b"0" * 5000, timeout=10)
        assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]


def test_full_queue_is_503_with_retry_after(tiny_spec) -> None:
    from gearshift.engine.pool import PoolSettings

    settings = ServerSettings(port=free_port(), pool=PoolSettings(max_queue=1))
    big = np.zeros((40000, 1, 8, 8), np.float32)
    with running_server(tiny_spec, settings=settings) as (url, server), ThreadPoolExecutor(3) as ex:

        def send_big() -> tc.InferResult:
            inp = tc.InferInput("input", list(big.shape), "FP32")
            inp.set_data_from_numpy(big)
            client = tc.InferenceServerClient(url, network_timeout=120)
            return client.infer("tiny-l", [inp], parameters={"deadline_ms": 60000})

        # two replicas busy, one request queued: the queue (max 1) is full
        pending = [ex.submit(send_big) for _ in range(3)]
        while server.pool.status().queue_length < 1:
            time.sleep(0.01)
        ok = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                          "data": [0.0] * 64}]}
        r = httpx.post(f"http://{url}/v2/models/tiny/infer", json=ok, timeout=10)
        assert r.status_code == 503, r.text
        assert "queue full" in r.json()["error"]
        assert int(r.headers["Retry-After"]) >= 1
        for p in pending:  # the requests already accepted are all answered
            assert p.result().as_numpy("logits").shape == (40000, 10)


def test_metrics_and_status_follow_the_controller(tiny_spec) -> None:
    script = [Decision("tiny-s", Allocation(2, 1)), Decision("tiny-l", Allocation(1, 2))]
    with running_server(tiny_spec, script) as (url, server):
        client = tc.InferenceServerClient(url)
        x = np.zeros((1, 1, 8, 8), np.float32)
        deadline = time.monotonic() + 20
        while status(url)["replicas"] != 1 and time.monotonic() < deadline:
            _infer(client, "tiny", x, True)
            time.sleep(0.05)
        st = status(url)
        assert (st["variant"], st["replicas"], st["threads"]) == ("tiny-l", 1, 2)
        assert st["switches"] >= 1 and st["allocation_changes"] == 1
        assert _infer(client, "tiny", x, True).get_response()["parameters"]["variant"] == "tiny-l"
        # the pool gauges are sampled once per control period: wait for the next one
        deadline = time.monotonic() + 10
        while True:
            text = httpx.get(f"http://{url}/metrics", timeout=5).text
            if "gearshift_replicas 1.0" in text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert 'gearshift_active_variant{variant="tiny-l"} 1.0' in text
        assert "gearshift_replicas 1.0" in text
        assert 'gearshift_requests_total{model="tiny"}' in text
        assert "gearshift_latency_seconds_bucket" in text
        policy = server.loop.controller.policy
        assert any(o.arrivals > 0 for o in policy.seen)  # the controller saw the load
