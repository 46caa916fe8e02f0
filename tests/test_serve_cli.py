"""`gearshift serve` as a user runs it: a separate process, driven over HTTP, stopped by signal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as tc

from gearshift.planning.table import PolicyRange, PolicyTable, save_policy
from gearshift.zoo.spec import PoolSpec
from tests.servers import free_port

pytestmark = pytest.mark.slow


def _policy(spec: PoolSpec, path: Path, boundary_rps: float) -> Path:
    ranges = [
        PolicyRange(min_rps=0.0, max_rps=boundary_rps, variant="tiny-l", replicas=1, threads=2,
                    p_on_time=1.0, effective_accuracy=0.8),
        PolicyRange(min_rps=boundary_rps, max_rps=float("inf"), variant="tiny-s", replicas=2,
                    threads=1, p_on_time=1.0, effective_accuracy=0.6),
    ]
    save_policy(PolicyTable(application=spec.application, pool_digest=spec.digest(),
                            deadline_ms=spec.deadline_ms, cores=2, ranges=ranges), path)
    return path


def _children(pid: int) -> set[int]:
    kids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.add(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _start(spec_path: Path, policy: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gearshift.cli", "serve", str(spec_path), "--policy",
           str(policy), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("server not ready")


def _send(port: int, x: np.ndarray, deadline_ms: float = 60000) -> dict:
    client = tc.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
    inp = tc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    r = client.infer("tiny", [inp], parameters={"deadline_ms": deadline_ms})
    return r.get_response()["parameters"]


def test_sigterm_answers_what_is_held_and_stops_workers(tiny_spec, tiny_pool_path, tmp_path):
    port = free_port()
    policy = _policy(tiny_spec, tmp_path / "policy.json", 1e9)
    proc = _start(tiny_pool_path, policy, port)
    try:
        workers = _children(proc.pid)
        assert len(workers) >= 1
        big = np.zeros((30000, 1, 8, 8), np.float32)
        with ThreadPoolExecutor(4) as ex:
            held = [ex.submit(_send, port, big) for _ in range(4)]
            time.sleep(0.5)  # all four are in the server: one serving, three queued
            proc.send_signal(signal.SIGTERM)
            answers = [h.result(timeout=120) for h in held]
        assert all(a["variant"] == "tiny-l" for a in answers)
        assert proc.wait(timeout=60) == 0
        left = [w for w in workers if Path(f"/proc/{w}").exists()]
        assert not left, [Path(f"/proc/{w}/stat").read_text() for w in left]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_load_step_moves_variant_and_back_within_two_periods(tiny_spec, tiny_pool_path, tmp_path):
    port, period = free_port(), 0.25
    log = tmp_path / "control.jsonl"
    policy = _policy(tiny_spec, tmp_path / "policy.json", boundary_rps=40)
    proc = _start(tiny_pool_path, policy, port, "--period-s", str(period),
                  "--control-log", str(log))
    x = np.zeros((1, 1, 8, 8), np.float32)
    try:
        phases = [(10, 2.0), (120, 2.0), (10, 2.5)]  # rate_rps, seconds
        marks = []
        with ThreadPoolExecutor(16) as ex:
            futures = []
            for rate, secs in phases:
                marks.append(time.monotonic())
                end = time.monotonic() + secs
                while time.monotonic() < end:  # bounded: at most ~300 requests in all
                    futures.append(ex.submit(_send, port, x))
                    time.sleep(1.0 / rate)
            marks.append(time.monotonic())
            assert all(f.result(timeout=60) for f in futures)
        st = httpx.get(f"http://127.0.0.1:{port}/gearshift/status", timeout=5).json()
        assert st["switches"] >= 2 and st["failed"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]
    variants = [ln["decision"]["variant"] for ln in lines]
    assert variants[0] == "tiny-l" and "tiny-s" in variants and variants[-1] == "tiny-l"
    first_light = variants.index("tiny-s")
    last_light = len(variants) - 1 - variants[::-1].index("tiny-s")
    step_up = (marks[1] - marks[0]) / period  # periods from the first tick to the step up
    step_down = (marks[2] - marks[0]) / period
    assert first_light <= step_up + 2 + 1  # +1: the first tick is one period after start
    assert last_light <= step_down + 2 + 1
    # no flapping inside the high phase
    assert set(variants[first_light:last_light + 1]) == {"tiny-s"}


def test_controller_can_be_swapped_without_a_restart(tiny_spec, tiny_pool_path, tmp_path):
    port = free_port()
    policy = _policy(tiny_spec, tmp_path / "policy.json", 40)
    proc = _start(tiny_pool_path, policy, port, "--prewarm", "all")
    try:
        url = f"http://127.0.0.1:{port}/gearshift/controller"
        r = httpx.put(url, json={"controller": "static:tiny-m"}, timeout=30)
        assert r.status_code == 200, r.text
        assert (r.json()["variant"], r.json()["policy"]) == ("tiny-m", "static:tiny-m")
        x = np.zeros((1, 1, 8, 8), np.float32)
        assert _send(port, x)["variant"] == "tiny-m"
        r = httpx.put(url, json={"controller": "static:tiny-xl"}, timeout=30)
        assert r.status_code == 400 and "no such variant" in r.json()["error"]
        r = httpx.put(url, json={"policy": "table"}, timeout=30)
        assert r.status_code == 400 and "body must be" in r.json()["error"]
        r = httpx.put(url, json={"controller": "table"}, timeout=30)
        assert r.json()["variant"] == "tiny-l" and r.json()["policy"] == "table"
        replanned = PolicyTable.model_validate_json(policy.read_text())
        first = replanned.ranges[0].model_copy(update={"variant": "tiny-m"})
        save_policy(replanned.model_copy(update={"ranges": [first, *replanned.ranges[1:]]}),
                    policy)
        r = httpx.put(url, json={"controller": "table"}, timeout=30)
        assert r.json()["variant"] == "tiny-m"  # the table re-planned on disk, no restart
        r = httpx.put(url, json={"controller": "static:tiny-s@1x2"}, timeout=30)
        assert (r.json()["variant"], r.json()["replicas"], r.json()["threads"]) == ("tiny-s", 1, 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_serve_with_a_token_file_and_management_closed(tiny_spec, tiny_pool_path, tmp_path):
    port = free_port()
    token = tmp_path / "token"
    token.write_text("t0ken-for-the-test-0123\n")
    token.chmod(0o600)
    policy = _policy(tiny_spec, tmp_path / "policy.json", 40)
    auth = {"Authorization": "Bearer t0ken-for-the-test-0123"}
    cmd = [sys.executable, "-m", "gearshift.cli", "serve", str(tiny_pool_path), "--policy",
           str(policy), "--port", str(port), "--auth-token-file", str(token),
           "--management", "closed", "--prewarm", "none"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v2/health/ready", headers=auth, timeout=1).status_code \
                        == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.1)
        assert httpx.get(f"{base}/v2/health/live", timeout=5).status_code == 200
        r = httpx.get(f"{base}/v2/health/ready", timeout=5)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        r = httpx.put(f"{base}/gearshift/controller", json={"controller": "table"},
                      headers=auth, timeout=10)
        assert r.status_code == 403 and "closed" in r.json()["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    token.chmod(0o644)  # a token others can read is refused at start
    bad = subprocess.run(cmd, check=False, capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"chmod 600" in bad.stdout + bad.stderr


def test_a_policy_file_deleted_or_corrupted_while_serving_is_a_400_that_says_why(
        tiny_spec, tiny_pool_path, tmp_path):
    port = free_port()
    policy = _policy(tiny_spec, tmp_path / "policy.json", 40)
    proc = _start(tiny_pool_path, policy, port, "--prewarm", "none")
    base = f"http://127.0.0.1:{port}"
    try:
        before = httpx.get(f"{base}/gearshift/status", timeout=5).json()
        cases = [
            (None, "does not exist"),
            (b'{"application": "tiny", "ranges": [', "line 1 column"),
            (b"\xff\xfe\x00 not text", "UTF-8"),
            (b"[1, 2]", "valid gearshift policy table"),
        ]
        for content, why in cases:
            if content is None:
                policy.unlink()
            else:
                policy.write_bytes(content)
            r = httpx.put(f"{base}/gearshift/controller", json={"controller": "table"},
                          timeout=30)
            assert r.status_code == 400, r.text
            said = r.json()["error"]
            assert str(policy) in said and why in said, said
            st = httpx.get(f"{base}/gearshift/status", timeout=5).json()
            assert (st["policy"], st["variant"], st["replicas"], st["threads"]) == (
                before["policy"], before["variant"], before["replicas"], before["threads"])
            x = np.zeros((1, 1, 8, 8), np.float32)
            assert _send(port, x)["variant"] == before["variant"]  # still serving
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
