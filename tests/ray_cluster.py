"""A two-node Ray cluster on this machine serving gearshift, driven through a load step and a
killed node. Run only inside a loopback-only network namespace (`test_ray_cluster.py` makes
one): Ray binds beyond loopback even when told not to.

    python tests/ray_cluster.py POOL.yaml POLICY.json WORKDIR RESULT.json

Writes what it saw to RESULT.json; stops Ray (and everything it started) in any case.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HEAD_PORT, HTTP_PORT = 6390, 8123
URL = f"http://127.0.0.1:{HTTP_PORT}"


def ray_cli(workdir: Path, *args: str) -> None:
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "HOME": str(workdir), "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(ray), *args], check=True, env=env, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def status() -> dict[str, Any]:
    r = httpx.get(f"{URL}/gearshift/status", timeout=5)
    return r.json()  # type: ignore[no-any-return]


def wait_for(what: str, check: Any, timeout_s: float) -> float:
    """Seconds until `check()` held; raises naming `what` after `timeout_s`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if check():
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}: {status()}")


ERRORS: list[str] = []  # the first few error answers, for the test to show


def send(x: np.ndarray) -> int:
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    try:
        r = httpx.post(f"{URL}/v2/models/tiny/infer", json=body, timeout=30)
    except httpx.HTTPError as exc:
        ERRORS.append(f"{type(exc).__name__}: {exc}")
        return 0
    if r.status_code != 200 and len(ERRORS) < 20:
        ERRORS.append(f"{r.status_code} {r.text[:300]}")
    return r.status_code


def phase(x: np.ndarray, rate_rps: float, seconds: float) -> list[int]:
    """Open-loop load: `rate_rps` for `seconds` (bounded), every status code."""
    with ThreadPoolExecutor(32) as ex:
        futures = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            futures.append(ex.submit(send, x))
            time.sleep(1.0 / rate_rps)
        return [f.result(timeout=60) for f in futures]


def node_variants() -> list[str]:
    return [n["variant"] for n in status().get("nodes", [])]


def scenario(pool: Path, policy: Path) -> dict[str, Any]:
    import ray
    from ray import serve

    from gearshift.ray import app

    ray.init(address=f"127.0.0.1:{HEAD_PORT}", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT})
    serve.run(app({"pool": str(pool), "policy": str(policy), "controller": "table:paper",
                   "nodes": "2", "period_s": "0.25", "prewarm": "none"}),
              name="gearshift", route_prefix="/", blocking=False)
    out: dict[str, Any] = {}
    out["ready_s"] = wait_for("two ready nodes", lambda: httpx.get(
        f"{URL}/v2/health/ready", timeout=5).status_code == 200
        and len(status().get("nodes", [])) == 2, 240)
    x = np.zeros((1, 1, 8, 8), np.float32)
    out["low"] = phase(x, 4, 2.0)
    out["low_variants"] = node_variants()
    out["low_decision"] = status()["variant"]
    codes: list[int] = []
    with ThreadPoolExecutor(1) as ex:
        high = ex.submit(phase, x, 60, 6.0)  # the nodes' shares of it move with Ray's routing
        t_high = time.monotonic()
        try:
            out["switched_s"] = wait_for(
                "every node on the light variant",
                lambda: node_variants() == ["tiny-s", "tiny-s"], 6.0)
        except RuntimeError as exc:
            out["switched_s"] = None
            out["switch_error"] = str(exc)
        codes = high.result()
        out["high_s"] = time.monotonic() - t_high
    out["high"] = codes
    victim = status()["nodes"][0]
    os.kill(int(victim["pid"]), signal.SIGKILL)
    out["killed"] = victim
    out["after_kill"] = phase(x, 10, 3.0)
    out["recovered_s"] = wait_for(
        "the killed node back", lambda: len(status().get("nodes", [])) == 2
        and all(n["workers_ready"] > 0 for n in status()["nodes"])
        and victim["pid"] not in [n["pid"] for n in status()["nodes"]], 180)
    out["after_recovery"] = phase(x, 10, 1.0)
    out["metrics"] = httpx.get(f"{URL}/metrics", timeout=5).text
    out["status"] = status()
    serve.shutdown()
    ray.shutdown()  # before `ray stop`: a connected driver prints every process's end
    return out


def main() -> None:
    pool, policy, workdir, result = (Path(a) for a in sys.argv[1:5])
    temp = Path(tempfile.mkdtemp(prefix="gsr-", dir="/tmp"))  # Ray's socket paths are short
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    out: dict[str, Any] = {}
    try:
        ray_cli(workdir, "start", "--head", "--port", str(HEAD_PORT), "--temp-dir", str(temp),
                "--include-dashboard", "false", *common)
        ray_cli(workdir, "start", "--address", f"127.0.0.1:{HEAD_PORT}", *common)
        os.environ["HOME"] = str(workdir)
        out = scenario(pool, policy)
    except Exception as exc:  # noqa: BLE001 - said in the result, for the test to show
        out["error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, subprocess.CalledProcessError):
            out["error"] += f" {exc.stderr.decode(errors='replace')[-2000:]}"
    finally:
        try:
            ray_cli(workdir, "stop", "--force")
        except Exception as exc:  # noqa: BLE001 - said in the result
            out["stop_error"] = str(exc)
        if not os.environ.get("GEARSHIFT_KEEP_RAY_LOGS"):
            shutil.rmtree(temp, ignore_errors=True)
        out["errors"] = ERRORS
        result.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
