"""The benchmark scripts are run by hand, so nothing else would notice one that no longer imports
after a change to the package: each is imported here, and the switching bench runs a tiny
case end to end (one shape, two paths, one deadline) on a synthetic profile."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_switching import late
from gearshift.profiling.profile import save_profile
from gearshift.types import Allocation
from tests.synthetic import exponential_ms, make_profile

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_benchmark_imports(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__doc__, f"benchmarks/{name}.py says nothing of what it measures"


def test_switching_bench_runs_a_small_case(tmp_path: Path) -> None:
    a21, a12 = Allocation(2, 1), Allocation(1, 2)
    profile = make_profile(
        {("heavy", a12): exponential_ms(90.0, 2000), ("heavy", a21): exponential_ms(160.0, 2000),
         ("light", a12): exponential_ms(25.0, 2000), ("light", a21): exponential_ms(40.0, 2000)},
        {"heavy": 0.78, "light": 0.70}, overhead_ms=[2.0], cores=2)
    save_profile(profile, tmp_path / "profile.json")
    (tmp_path / "summary.json").write_text(json.dumps(
        {"deadline_ms": 300.0, "notes": {"workload_capacity_rps": 50.0}}))
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_switching.py"), str(tmp_path),
         "--shapes", "steps", "--seeds", "2", "--duration", "10", "--deadlines", "300",
         "--workers", "1", "--slowdown", "1.2", "--late-start", "1",
         "--json", str(tmp_path / "paths.json")],
        capture_output=True, text=True, timeout=300, check=True, cwd=ROOT).stdout
    assert "| steps | 300 |" in out and "served 1.2 x slower" in out
    assert "begins up to 1 s late" in out
    paths = json.loads((tmp_path / "paths.json").read_text())
    assert len(paths["300.0"]["steps"]["table"]) == 2


def test_a_late_start_shifts_a_path_by_its_seeds_offset_and_drops_what_falls_past_its_end(
        ) -> None:
    path = np.array([0.0, 0.2, 9.5, 9.9])
    shifted = late(path, seed=3, most_s=1.0, duration_s=10.0)
    offset = shifted[0]
    assert 0.0 < offset < 1.0
    assert np.allclose(shifted, (path + offset)[path + offset < 10.0])
    assert np.array_equal(late(path, seed=3, most_s=1.0, duration_s=10.0), shifted)
    assert late(path, seed=3, most_s=0.0, duration_s=10.0) is path
