"""The command line, run as a user would: build a pool, check it, profile it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gearshift.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_build_check_and_profile_tiny_pool(tmp_path: Path) -> None:
    r = runner.invoke(app, ["zoo", "build", "tiny", "--out", str(tmp_path / "zoo")])
    assert r.exit_code == 0, r.output
    spec = tmp_path / "zoo" / "pool.yaml"
    assert spec.is_file()
    r = runner.invoke(app, ["pool", "check", str(spec), "--allocation", "2x1",
                            "--allocation", "1x2"])
    assert r.exit_code == 0, r.output
    for name in ("tiny-s", "tiny-m", "tiny-l"):
        assert r.output.count(name) == 2  # one row per allocation
    r = runner.invoke(app, ["profile", str(spec), "--quick", "--cores", "2",
                            "--out", str(tmp_path / "profile.json")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "profile.json").is_file()


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["pool", "check", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2
    assert "error:" in r.output and "gearshift zoo build" in r.output
    r = runner.invoke(app, ["zoo", "build", "vgg", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "choose resnet, fashion or tiny" in r.output
    r = runner.invoke(app, ["pool", "check", str(tmp_path / "nope.yaml"), "--allocation", "2by1"])
    assert r.exit_code == 2
