"""The profiler measures the real pool and writes a profile that only its own pool accepts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from gearshift.errors import SpecError
from gearshift.profiling.profile import load_profile, save_profile
from gearshift.profiling.profiler import ProfileSettings, measure
from gearshift.types import Allocation
from gearshift.zoo.spec import load_pool_spec
from gearshift.zoo.tiny import build_mlp

pytestmark = pytest.mark.slow


def test_profile_covers_every_variant_and_allocation(tiny_spec, tmp_path: Path) -> None:
    steps: list[tuple[int, int, str]] = []
    prof = asyncio.run(asyncio.wait_for(
        measure(tiny_spec, ProfileSettings(cores=2, samples=30, overhead_samples=20),
                lambda d, t, m: steps.append((d, t, m))), 120))
    assert {(e.variant, e.allocation) for e in prof.entries} == {
        (v, a) for v in tiny_spec.variant_names() for a in (Allocation(2, 1), Allocation(1, 2))
    }
    assert all(len(e.service_ms) == 30 and e.throughput_rps > 0 for e in prof.entries)
    assert all(s > 0 for e in prof.entries for s in e.service_ms)
    assert len(prof.overhead_ms) == 20
    assert prof.accuracy == {v.name: v.accuracy.value for v in tiny_spec.variants}
    assert steps[-1][0] == steps[-1][1]  # progress reached its total
    path = tmp_path / "profile.json"
    save_profile(prof, path)
    assert load_profile(path, tiny_spec.digest()) == prof


def test_profile_refused_for_another_pool(tiny_pool_path: Path, tmp_path: Path) -> None:
    spec = load_pool_spec(tiny_pool_path)
    shutil.copytree(tiny_pool_path.parent, tmp_path / "other")
    build_mlp(tmp_path / "other" / "tiny-s.onnx", (1, 8, 8), depth=2, width=16, seed=5)
    other = load_pool_spec(tmp_path / "other" / "pool.yaml")
    prof = asyncio.run(measure(spec, ProfileSettings(cores=1, samples=5, overhead_samples=5)))
    save_profile(prof, tmp_path / "p.json")
    with pytest.raises(SpecError, match="different pool.*gearshift profile"):
        load_profile(tmp_path / "p.json", other.digest())
    with pytest.raises(SpecError, match="does not exist"):
        load_profile(tmp_path / "absent.json")
