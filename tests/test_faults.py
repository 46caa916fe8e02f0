"""A replica killed under load, steady, during an R x T change and during a variant switch: the
short runs of `benchmarks/faults.py` against a real `gearshift serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.faults import run_fault

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("when", ["steady", "rxt", "switch"])
def test_a_replica_killed_under_load_costs_at_most_its_request(tmp_path: Path, when) -> None:
    res = run_fault(tmp_path, when, seconds=4.0)
    assert res.problems() == []
    assert res.worker_errors <= 1 and res.other_errors == []
    # the load is 0.6x the capacity measured at the start, so its size follows the machine's
    # spare CPU: ask for most of it answered, not a fixed count
    assert res.requests >= 20 and res.statuses.get(200, 0) >= 0.85 * res.requests, res.statuses
    want = {"steady": ("soak-s", 2, 1), "rxt": ("soak-s", 1, 2), "switch": ("soak-l", 2, 1)}
    assert tuple(res.final[k] for k in ("variant", "replicas", "threads")) == want[when]


def _marked(mark: str) -> list[int]:
    """Processes whose environment carries `mark` (the server's and its replicas')."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if mark.encode() in (d / "environ").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _break(path: Path, how: str) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    elif how == "garbage":
        path.write_bytes(b"\x00not an onnx model" * 100)
    else:  # parses as ONNX, but ONNX Runtime refuses it: a weight of the wrong shape
        m = onnx.load(str(path))
        for init in m.graph.initializer:
            if init.name == "w0":
                w = numpy_helper.to_array(init)
                bad = np.zeros((w.shape[0] + 3, w.shape[1]), np.float32)
                init.CopyFrom(numpy_helper.from_array(bad, "w0"))
        onnx.save(m, str(path))


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage", "rejected"])
def test_a_bad_model_file_at_start_names_the_file_exits_and_leaves_no_worker(
        tmp_path: Path, how: str) -> None:
    import os
    import subprocess
    import sys
    import uuid

    from gearshift.zoo.spec import load_pool_spec
    from gearshift.zoo.tiny import build_tiny_pool
    from tests.servers import free_port
    from tests.test_serve_cli import _policy

    spec_path = build_tiny_pool(tmp_path / "pool")
    victim = tmp_path / "pool" / "tiny-s.onnx"
    _break(victim, how)
    if how == "rejected":  # the pool's digest changed: plan for it, so start gets to the replicas
        _policy(load_pool_spec(spec_path), tmp_path / "policy.json", 1e9)
    else:
        (tmp_path / "policy.json").write_text("{}")
    mark = f"GEARSHIFT_TEST_MARK={uuid.uuid4().hex}"
    env = dict(os.environ, GEARSHIFT_TEST_MARK=mark.split("=", 1)[1])
    proc = subprocess.run(
        [sys.executable, "-m", "gearshift.cli", "serve", str(spec_path), "--policy",
         str(tmp_path / "policy.json"), "--port", str(free_port()), "--prewarm", "none"],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert str(victim) in said.replace(" ", "") or str(victim) in said, said
    assert "Traceback" not in said
    assert _marked(mark) == []


def test_readiness_turns_503_when_every_replica_is_gone(tiny_spec) -> None:
    import os
    import signal
    import time

    import httpx

    from gearshift.engine.pool import PoolSettings
    from gearshift.serving.server import ServerSettings
    from tests.servers import free_port, running_server

    settings = ServerSettings(port=free_port(), period_s=0.2, pool=PoolSettings(max_restarts=0))
    with running_server(tiny_spec, settings=settings) as (url, server):
        assert httpx.get(f"http://{url}/v2/health/ready").status_code == 200
        for pid in server.pool.worker_pids().values():
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 20
        while httpx.get(f"http://{url}/v2/health/ready").status_code == 200:
            assert time.monotonic() < end, "still ready with no replica"
            time.sleep(0.05)
        assert httpx.get(f"http://{url}/v2/health/live").status_code == 200
        r = httpx.post(f"http://{url}/v2/models/tiny/infer", json={"inputs": [
            {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]})
        assert r.status_code == 503 and "not ready" in r.json()["error"]
        said = httpx.get(f"http://{url}/gearshift/status").json()
        assert said["workers_ready"] == 0 and "not replacing" in said["last_error"]
