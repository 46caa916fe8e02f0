"""gearshift on a real two-node Ray cluster (`gearshift.ray`), inside a loopback-only network
namespace: a load step makes every node switch, a killed node's pool leaves the application
answering and is brought back by Ray Serve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gearshift.planning.table import PolicyRange, PolicyTable, save_policy
from gearshift.zoo.spec import PoolSpec

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ray_cluster.py")


def _policy(spec: PoolSpec, path: Path) -> Path:
    """A node of one core: the accurate variant up to 10 requests/s a node, the light one
    beyond."""
    ranges = [
        PolicyRange(min_rps=0.0, max_rps=10.0, variant="tiny-l", replicas=1, threads=1,
                    p_on_time=1.0, effective_accuracy=0.8),
        PolicyRange(min_rps=10.0, max_rps=float("inf"), variant="tiny-s", replicas=1,
                    threads=1, p_on_time=1.0, effective_accuracy=0.6),
    ]
    save_policy(PolicyTable(application=spec.application, pool_digest=spec.digest(),
                            deadline_ms=spec.deadline_ms, cores=1, ranges=ranges), path)
    return path


def _namespace() -> str:
    """A new loopback-only network namespace, or a failure that says why there is none."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the Ray cluster test needs root and iproute2 (ip netns) to make a "
                    "loopback-only network namespace: Ray binds beyond loopback otherwise")
    name = f"gs-ray-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], check=False, capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.fail(f"cannot make a network namespace for the Ray cluster: {made.stderr}")
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    return name


def test_a_two_node_cluster_switches_every_node_and_survives_a_killed_pool(
        tiny_spec: PoolSpec, tiny_pool_path: Path, tmp_path: Path) -> None:
    policy = _policy(tiny_spec, tmp_path / "policy.json")
    result = tmp_path / "result.json"
    ns = _namespace()
    try:
        run = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(SCRIPT), str(tiny_pool_path),
             str(policy), str(tmp_path), str(result)],
            check=False, capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    assert result.is_file(), run.stderr[-3000:]
    out = json.loads(result.read_text())
    assert "error" not in out, out.get("error")
    assert set(out["low"]) == {200}, out["errors"]
    # light load: both nodes on the accurate variant; 60 requests/s (30 a node): both switch
    assert out["low_variants"] == ["tiny-l", "tiny-l"] and set(out["low"]) == {200}
    assert out["switched_s"] is not None, out.get("switch_error")
    # every request answered: a result, or 504 for one whose deadline the queue passed
    assert set(out["high"]) <= {200, 504} and out["high"].count(200) >= 0.8 * len(out["high"])
    # a node's pool killed: every request answered, by a result or a 503 that says retry
    assert set(out["after_kill"]) <= {200, 503} and out["after_kill"].count(200) >= \
        0.7 * len(out["after_kill"])
    assert set(out["after_recovery"]) <= {200, 504} and 200 in out["after_recovery"]
    st = out["status"]
    assert len(st["nodes"]) == 2 and st["policy"] == "table:paper"
    assert 'gearshift_requests_total{model="tiny"}' in out["metrics"]
    assert "gearshift_active_variant" in out["metrics"]
