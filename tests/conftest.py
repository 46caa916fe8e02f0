"""Shared fixtures: a pool of real tiny ONNX models, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearshift.zoo.spec import PoolSpec, load_pool_spec
from gearshift.zoo.tiny import build_tiny_pool


@pytest.fixture(scope="session")
def tiny_pool_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pool(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_spec(tiny_pool_path: Path) -> PoolSpec:
    return load_pool_spec(tiny_pool_path)
