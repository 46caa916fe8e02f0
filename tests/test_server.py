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
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("logits", "FP32")]
        assert meta["outputs"][0]["shape"][-1] == 10  # the batch dimension may be open (-1)
        assert client.get_model_metadata("tiny-l")["outputs"] == meta["outputs"]
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
        for model in ("tiny", "tiny-m", "tiny-l"):
            r = _infer(client, model, x, binary)
            params = r.get_response()["parameters"]
            want = params["variant"] if model == "tiny" else model
            assert params["variant"] == want
            assert params["queue_ms"] >= 0 and params["service_ms"] > 0
            assert 0.0 <= params["handoff_ms"] < 1000.0
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
        handoffs = [float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith("gearshift_replica_handoff_seconds_count")]
        assert sum(handoffs) >= 1  # every answer's hand-off is counted
        policy = server.loop.controller.policy
        assert any(o.arrivals > 0 for o in policy.seen)  # the controller saw the load
        assert all(sum(o.arrival_parts) == o.arrivals for o in policy.seen)  # when, too
        # and every answer's service time, by the variant and its replica's threads (tiny-l
        # on the old 2x1 replicas too, while the new 1x2 one came up)
        assert all(sum(x.count for x in o.service) == o.completed for o in policy.seen)
        served = {(x.variant, x.threads) for o in policy.seen for x in o.service if x.total_ms > 0}
        assert {v for v, _ in served} == {"tiny-s", "tiny-l"} and served <= {
            ("tiny-s", 1), ("tiny-l", 1), ("tiny-l", 2)}


def test_an_upgraded_answer_says_its_variant_and_is_counted_in_status_and_metrics(
        tiny_spec) -> None:
    """tiny-s in force with tiny-l as its upgrade, and no profile: once tiny-l has served a
    few requests that named it (enough replies to read its tail off), an idle server's
    answer comes from tiny-l (its deadline leaves room), says so (`served_as`), and /status
    and /metrics count it."""
    script = [Decision("tiny-s", Allocation(2, 1), upgrades=("tiny-l",))]
    with running_server(tiny_spec, script) as (url, _):
        client = tc.InferenceServerClient(url)
        x = np.zeros((1, 1, 8, 8), np.float32)
        for _ in range(8):  # 0.9 ** 8 < 0.5: its 0.9 quantile resolved (`dispatch.resolves`)
            named = _infer(client, "tiny-l", x, True).get_response()
            assert named["parameters"]["served_as"] == "named"
        answer = _infer(client, "tiny", x, True).get_response()
        assert answer["parameters"]["variant"] == "tiny-l"
        assert answer["parameters"]["served_as"] == "upgrade"
        st = status(url)
        assert st["variant"] == "tiny-s" and st["upgrades"] >= 1 and st["fallbacks"] == 0
        deadline = time.monotonic() + 10  # the pool gauges are sampled once per period
        while True:
            text = httpx.get(f"http://{url}/metrics", timeout=5).text
            ups = [float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("gearshift_upgrades ")]
            if (ups and ups[0] >= 1) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ups and ups[0] >= 1


# ----- bad input is a 4xx that says why; the controller sees valid requests only ---------------

_OK = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}


def _doc(**tensor: object) -> dict:
    return {"inputs": [{**_OK, **tensor}]}


def test_bad_input_is_4xx_with_the_reason_and_never_queued(tiny_spec) -> None:
    settings = ServerSettings(port=free_port(), period_s=3600.0)  # no tick empties the window
    with running_server(tiny_spec, settings=settings) as (url, server):
        base = f"http://{url}/v2/models"
        big = b'{"inputs":[{"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":[' + (
            b"9" * 5000) + b"]}]}"
        float_size = json.dumps({"inputs": [{**_OK, "data": None, "parameters": {
            "binary_data_size": 256.0}}]}).encode()
        cases = [
            ("tiny/infer", json.dumps(_doc(datatype="UINT8", data=[300] * 64)).encode(), {},
             "must be FP32"),
            ("tiny/infer", big, {}, "4300 digits"),
            ("tiny/infer", b"[" * 100_000, {}, "nested too deeply"),
            ("tiny/infer", json.dumps(_doc(shape=[1] * 70)).encode(), {}, "dimensions"),
            ("tiny/infer", json.dumps(_doc(shape=[1000000000000])).encode(), {}, "elements"),
            ("tiny/infer", json.dumps(_doc(data=[None] * 64)).encode(), {}, "null"),
            ("tiny/infer", json.dumps({"inputs": [_OK, _OK]}).encode(), {}, "more than once"),
            ("tiny/infer", json.dumps({"inputs": [_OK, {**_OK, "name": "x"}]}).encode(), {},
             "unknown input"),
            ("tiny/infer", json.dumps({"inputs": [{**_OK, "name": "x"}]}).encode(), {},
             "missing input"),
            ("tiny/infer", json.dumps({**_doc(), "parameters": {"deadline_ms": 2 ** 1024}}).encode(),
             {}, "deadline_ms"),
            ("tiny/infer", json.dumps({**_doc(), "parameters": {"deadline_ms": "5"}}).encode(),
             {}, "deadline_ms"),
            ("tiny/infer", json.dumps({**_doc(), "parameters": {"deadline_ms": 1e12}}).encode(),
             {}, "deadline_ms"),
            ("tiny/infer", json.dumps({**_doc(), "parameters": {"deadline_ms": 0}}).encode(),
             {}, "deadline_ms"),
            ("tiny/infer", float_size + b"\0" * 256,
             {"Inference-Header-Content-Length": str(len(float_size))}, "binary_data_size"),
            ("tiny/infer", json.dumps({**_doc(), "outputs": [{"name": "nope"}]}).encode(), {},
             "unknown output"),
            ("tiny/versions/1/infer", json.dumps({**_doc(), "outputs": [
                {"name": "logits"}, {"name": "x" * 200}]}).encode(), {}, "unknown output"),
            ("tiny/infer", json.dumps(_doc()).encode(), {"Inference-Header-Content-Length": "-5"},
             "Inference-Header-Content-Length"),
            ("tiny/infer", float_size + b"\0" * 256,
             [("Inference-Header-Content-Length", str(len(float_size))),
              ("Inference-Header-Content-Length", "5")], "given 2 times"),
            ("tiny/versions/2/infer", json.dumps(_doc()).encode(), {}, "no version '2'"),
            ("ti%20ny/infer", json.dumps(_doc()).encode(), {}, "model names are"),
            ("..%2F..%2Fetc%2Fpasswd/infer", json.dumps(_doc()).encode(), {}, ""),
            ("tiny/infer", gzip.compress(b"\0" * (70 << 20)), {"Content-Encoding": "gzip"},
             "exceeds the limit"),
            ("tiny/infer", gzip.compress(json.dumps(_doc()).encode())[:-10],
             {"Content-Encoding": "gzip"}, "not valid gzip"),
        ]
        for path, body, headers, text in cases:
            r = httpx.post(f"{base}/{path}", content=body, headers=headers, timeout=30)
            assert 400 <= r.status_code < 500, (path, text, r.status_code, r.text)
            assert text in r.json()["error"], (text, r.text)
        assert server.plane.window.arrivals == 0  # none of them was an arrival
        assert server.pool.counters.served == 0
        r = httpx.post(f"{base}/tiny/infer", json=_doc(), timeout=10)
        assert r.status_code == 200
        assert server.plane.window.arrivals == 1


def test_a_500_echoes_no_exception_text(tiny_spec, monkeypatch) -> None:
    with running_server(tiny_spec) as (url, server):
        async def broken(*_: object) -> None:
            raise RuntimeError("secret detail /etc/hidden")

        monkeypatch.setattr(server.plane, "infer", broken)
        r = httpx.post(f"http://{url}/v2/models/tiny/infer", json=_doc(), timeout=10)
        assert r.status_code == 500
        assert "secret" not in r.text and "RuntimeError" not in r.text
        assert r.json()["error"].startswith("internal error")


def test_a_client_that_leaves_has_its_queued_request_cancelled(tiny_spec, monkeypatch) -> None:
    import asyncio
    import socket

    with running_server(tiny_spec) as (url, server):
        waiting: list[asyncio.Future] = []

        async def queued(*_: object) -> None:  # stands in for a request waiting in the queue
            fut = asyncio.get_running_loop().create_future()
            waiting.append(fut)
            await fut

        monkeypatch.setattr(server.pool, "infer", queued)
        body = json.dumps(_doc()).encode()
        host, port = url.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
            deadline = time.monotonic() + 10
            while not waiting and time.monotonic() < deadline:
                time.sleep(0.01)
            assert waiting, "the request never reached the pool"
        deadline = time.monotonic() + 10
        while not waiting[0].cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waiting[0].cancelled()  # the pool skips a job whose future is done
        assert status(url)["disconnects"] == 1


def test_large_bodies_are_decoded_off_the_event_loop(tiny_spec, monkeypatch) -> None:
    import threading

    import gearshift.serving.app as app_module

    threads: list[str] = []
    real = app_module.decode_request

    def spy(*args: object) -> object:
        threads.append(threading.current_thread().name)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(app_module, "decode_request", spy)
    with running_server(tiny_spec) as (url, _):
        small = httpx.post(f"http://{url}/v2/models/tiny/infer", json=_doc(), timeout=10)
        x = np.zeros((2000, 1, 8, 8), np.float32)
        big = {"inputs": [{**_OK, "shape": list(x.shape), "data": x.ravel().tolist()}]}
        large = httpx.post(f"http://{url}/v2/models/tiny/infer", json=big, timeout=30)
        assert small.status_code == large.status_code == 200
        assert large.json()["outputs"][0]["shape"] == [2000, 10]
    loop_thread, worker_thread = threads
    assert loop_thread != worker_thread and worker_thread.startswith("asyncio")


def test_requests_cut_off_at_the_shutdown_timeout_get_a_json_503(tiny_spec, monkeypatch) -> None:
    import asyncio
    import threading

    from gearshift.policy import Controller
    from gearshift.serving.server import Server
    from tests.servers import ScriptedPolicy, _wait_ready

    first = Decision("tiny-s", Allocation(1, 1))
    settings = ServerSettings(port=free_port(), graceful_timeout_s=0.5)
    server = Server(tiny_spec, Controller(ScriptedPolicy([first])), first, settings)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"127.0.0.1:{settings.port}"
    try:
        _wait_ready(url, 60)

        async def forever(*_: object) -> None:
            await asyncio.get_running_loop().create_future()

        monkeypatch.setattr(server.pool, "infer", forever)
        with ThreadPoolExecutor(1) as ex:
            pending = ex.submit(httpx.post, f"http://{url}/v2/models/tiny/infer", json=_doc(),
                                timeout=30)
            deadline = time.monotonic() + 10
            while server.plane.window.arrivals < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server._uvicorn is not None
            server._uvicorn.should_exit = True
            r = pending.result(timeout=30)
        assert r.status_code == 503, r.text
        assert "shut down" in r.json()["error"]
    finally:
        if server._uvicorn is not None:
            server._uvicorn.should_exit = True
        thread.join(60)
        assert not thread.is_alive()


def test_shutdown_during_a_slow_change_returns_promptly_and_leaves_no_worker(
        tiny_spec, monkeypatch) -> None:
    import os
    import signal
    from pathlib import Path

    from gearshift.engine.lifecycle import Lifecycle
    from gearshift.engine.pool import PoolSettings

    hung: list[int] = []
    real_spawn = Lifecycle._spawn

    def spawn(self, slot):  # a replica of a change (not of the start) hangs while loading
        r = real_spawn(self, slot)
        if self.allocation is not None:
            os.kill(r.handle.pid, signal.SIGSTOP)
            hung.append(r.handle.pid)
        return r

    monkeypatch.setattr(Lifecycle, "_spawn", spawn)
    script = [Decision("tiny-s", Allocation(1, 1)), Decision("tiny-s", Allocation(2, 1))]
    settings = ServerSettings(port=free_port(), period_s=0.2, graceful_timeout_s=2.0,
                              pool=PoolSettings(start_timeout_s=30.0))
    try:
        with running_server(tiny_spec, script, settings) as (url, _server):
            end = time.monotonic() + 20
            while not hung:
                assert time.monotonic() < end, "no allocation change started"
                time.sleep(0.02)
            time.sleep(0.3)
            assert status(url)["replicas"] == 1  # the change is still in progress
            t0 = time.monotonic()
        took = time.monotonic() - t0
        assert took < 6.0, f"shutdown took {took:.1f} s"
        end = time.monotonic() + 5
        while any(Path(f"/proc/{p}").exists() for p in hung) and time.monotonic() < end:
            time.sleep(0.05)
        assert not [p for p in hung if Path(f"/proc/{p}").exists()]
    finally:
        for p in hung:  # our own child, if the test failed before the server killed it
            if Path(f"/proc/{p}").exists():
                os.kill(p, signal.SIGKILL)


def test_request_bodies_in_flight_share_a_byte_budget(tiny_spec, monkeypatch) -> None:
    import asyncio
    import socket

    settings = ServerSettings(port=free_port(), period_s=3600.0, max_body_bytes=1 << 20,
                              max_inflight_body_bytes=1 << 20)
    with running_server(tiny_spec, settings=settings) as (url, server):
        waiting: list[asyncio.Future] = []
        real = server.pool.infer

        async def held(*args: object) -> object:  # the first request waits until released
            if not waiting:
                fut = asyncio.get_running_loop().create_future()
                waiting.append(fut)
                await fut
            return await real(*args)

        monkeypatch.setattr(server.pool, "infer", held)
        n = 2200  # items: ~570 kB in JSON-free binary, over half the budget
        x = np.full((n, 1, 8, 8), 0.5, np.float32)
        head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape),
                                       "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "parameters": {"deadline_ms": 60000}}).encode()
        body = head + x.tobytes()
        headers = {"Inference-Header-Content-Length": str(len(head)),
                   "Content-Type": "application/octet-stream"}
        base = f"http://{url}/v2/models/tiny/infer"
        with ThreadPoolExecutor(1) as ex:
            first = ex.submit(httpx.post, base, content=body, headers=headers, timeout=30)
            end = time.monotonic() + 10
            while not waiting and time.monotonic() < end:
                time.sleep(0.01)
            assert waiting, "the first request never reached the pool"
            r = httpx.post(base, content=body, headers=headers, timeout=30)
            assert r.status_code == 503 and "retry-after" in r.headers, r.text
            assert "in flight" in r.json()["error"]
            host, port = url.split(":")  # declared too large for what is left: refused unread
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/octet-stream\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 503")
            loop = waiting[0].get_loop()
            loop.call_soon_threadsafe(waiting[0].set_result, None)
            assert first.result(timeout=30).status_code == 200
        r = httpx.post(base, content=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text  # the budget was given back
