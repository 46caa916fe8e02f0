"""Pool spec validation: every mistake fails with one message naming the field and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gearshift.errors import SpecError
from gearshift.zoo.spec import load_pool_spec
from gearshift.zoo.tiny import build_mlp


def _copy_pool(src: Path, dst: Path) -> dict:
    shutil.copytree(src.parent, dst, dirs_exist_ok=True)
    return yaml.safe_load((dst / "pool.yaml").read_text())


def _write(dst: Path, data: dict) -> Path:
    p = dst / "pool.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def test_valid_spec_loads_with_paths_relative_to_it(tiny_spec) -> None:
    assert tiny_spec.application == "tiny"
    assert tiny_spec.variant_names() == ["tiny-s", "tiny-m", "tiny-l"]
    assert tiny_spec.model_path("tiny-m").is_file()
    assert tiny_spec.accuracy_of("tiny-l") == pytest.approx(0.8)


def test_digest_changes_with_a_model_file(tiny_pool_path: Path, tmp_path: Path) -> None:
    data = _copy_pool(tiny_pool_path, tmp_path)
    before = load_pool_spec(_write(tmp_path, data)).digest()
    build_mlp(tmp_path / "tiny-s.onnx", (1, 8, 8), depth=1, width=32, seed=99)
    assert load_pool_spec(tmp_path / "pool.yaml").digest() != before


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["variants"][1].update(path="nope.onnx"), r"variants\[1\]\.path: .*does not exist"),
        (lambda d: d["variants"][2].update(name="tiny-s"), r"tiny-s.*appears twice"),
        (lambda d: d["variants"][0]["accuracy"].update(value=1.3), r"variants\[0\]\.accuracy\.value"),
        (lambda d: d["variants"][0]["accuracy"].update(value=-0.1), r"variants\[0\]\.accuracy\.value"),
        (lambda d: d["variants"][0]["accuracy"].update(kind="guessed"), r"accuracy\.kind"),
        (lambda d: d["input"].update(shape=[1, 8, 9]), r"does not match the model's input.*fix input\.shape"),
        (lambda d: d["input"].update(shape=[64]), r"has 1 dims but the model's input has 4"),
        (lambda d: d["input"].update(name="image"), r"no input named 'image'.*it has: input"),
        (lambda d: d.pop("application"), r"application: required field is missing"),
        (lambda d: d.update(colour="red"), r"colour: unknown field"),
        (lambda d: d.update(variants=[]), r"variants: "),
        (lambda d: d["variants"][0].update(precision="bf16"),
         r"engine onnxruntime runs no 'bf16' precision; use native, or engine openvino for bf16"),
        (lambda d: d["variants"][0].update(engine="tvm"), r"variants\[0\]\.engine"),
    ],
)
def test_bad_spec_names_the_field(tiny_pool_path: Path, tmp_path: Path, mutate, expected) -> None:
    data = _copy_pool(tiny_pool_path, tmp_path)
    mutate(data)
    with pytest.raises(SpecError, match=expected):
        load_pool_spec(_write(tmp_path, data))


def test_missing_spec_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="gearshift zoo build"):
        load_pool_spec(tmp_path / "absent.yaml")


def test_not_yaml_and_not_onnx_are_reported(tiny_pool_path: Path, tmp_path: Path) -> None:
    data = _copy_pool(tiny_pool_path, tmp_path)
    (tmp_path / "tiny-s.onnx").write_bytes(b"not a model")
    with pytest.raises(SpecError, match=r"variants\[0\]\.path: .* is not an ONNX model"):
        load_pool_spec(_write(tmp_path, data))
    (tmp_path / "pool.yaml").write_text("application: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_pool_spec(tmp_path / "pool.yaml")
