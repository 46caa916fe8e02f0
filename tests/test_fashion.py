"""The Fashion-MNIST family: IDX parsing, the shipped pool, evaluation, quantization, pruning.

No test trains. Tests that need the real data set skip when it is not installed (`make test`
installs it with apt).
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from typer.testing import CliRunner

from gearshift.cli import app as gearshift_app
from gearshift.data.fashion import (
    CLASSES,
    DEFAULT_FASHION_DIR,
    MEAN,
    STD,
    is_installed,
    load_fashion,
    parse_idx,
    read_idx,
)
from gearshift.errors import SpecError
from gearshift.types import AccuracyKind
from gearshift.zoo.evaluate import evaluate_pool
from gearshift.zoo.fashion import FAMILY, build_fashion_pool, read_recipe
from gearshift.zoo.prepare import pareto_decisions, prune_pool, quantize_pool
from gearshift.zoo.spec import load_pool_spec

needs_data = pytest.mark.skipif(
    not is_installed(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)
runner = CliRunner()


def _idx(values: np.ndarray, code: int) -> bytes:
    """An IDX file by hand: magic (0, 0, type, ndim), big-endian sizes, big-endian values."""
    dtype = {0x08: ">u1", 0x0C: ">i4"}[code]
    header = bytes([0, 0, code, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    return header + values.astype(dtype).tobytes()


def test_parse_idx_handmade() -> None:
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    got = parse_idx(_idx(pixels, 0x08))
    assert got.shape == (2, 3, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, pixels)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    np.testing.assert_array_equal(parse_idx(_idx(ints, 0x0C)), ints)


def test_parse_idx_rejects_bad_files() -> None:
    with pytest.raises(SpecError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x00")
    truncated = _idx(np.zeros((2, 2), np.uint8), 0x08)[:-1]
    with pytest.raises(SpecError, match="header says"):
        parse_idx(truncated)


def _write_fake_fashion(folder: Path, count: int = 3) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = np.arange(count, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        for kind, arr in (("images-idx3", pixels), ("labels-idx1", labels)):
            with gzip.open(folder / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(_idx(arr, 0x08))
    return pixels


def test_load_fashion_from_a_folder(tmp_path: Path) -> None:
    pixels = _write_fake_fashion(tmp_path / "fm")
    data = load_fashion("test", tmp_path / "fm")
    assert data.images.shape == (3, 1, 28, 28) and data.images.dtype == np.float32
    np.testing.assert_allclose(data.images[:, 0] * 255, pixels, atol=1e-3)
    assert data.labels.tolist() == [0, 1, 2] and data.labels.dtype == np.int64
    assert read_idx(tmp_path / "fm" / "train-labels-idx1-ubyte.gz").tolist() == [0, 1, 2]


def test_absent_data_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_fashion("train", tmp_path / "nowhere")
    assert "dataset-fashion-mnist" in str(err.value)
    assert "apt-get install -y dataset-fashion-mnist" in str(err.value)


def test_shipped_recipe_meets_the_family_contract() -> None:
    recipe = read_recipe()
    names = [v["name"] for v in recipe["variants"]]
    assert names == [c.name for c in FAMILY]
    accs = [v["test_accuracy"] for v in recipe["variants"]]
    assert accs == sorted(accs) and accs[-1] >= 0.92
    assert all(v["onnx_bytes"] < 2_000_000 for v in recipe["variants"])


@pytest.fixture(scope="module")
def fashion_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fashion_pool(tmp_path_factory.mktemp("fashion"))


def test_build_fashion_pool_copies_the_shipped_models(fashion_pool: Path) -> None:
    spec = load_pool_spec(fashion_pool)
    assert spec.application == "fashion-mnist"
    assert spec.variant_names() == [c.name for c in FAMILY]
    assert spec.input.shape == [1, 28, 28] and spec.input.preprocessing.mean == [MEAN]
    assert all(v.accuracy.kind == AccuracyKind.MEASURED for v in spec.variants)
    labels = (fashion_pool.parent / spec.labels).read_text().splitlines()
    assert labels == list(CLASSES)
    recipe = {v["name"]: v["test_accuracy"] for v in read_recipe()["variants"]}
    assert {n: spec.accuracy_of(n) for n in recipe} == recipe


def _direct_accuracy(model: Path, count: int) -> float:
    """Hand-rolled: normalise, run ONNX Runtime on the whole batch, argmax, compare."""
    test = load_fashion("test", DEFAULT_FASHION_DIR).head(count)
    x = ((test.images - MEAN) / STD).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": x})[0]
    return float(np.mean(logits.argmax(axis=1) == test.labels))


@needs_data
def test_evaluate_matches_a_direct_computation(fashion_pool: Path, tmp_path: Path) -> None:
    spec_path = build_fashion_pool(tmp_path / "pool")
    got = evaluate_pool(spec_path, "fashion-test", threads=1, limit=200)
    spec = load_pool_spec(spec_path)
    for name, acc in got.items():
        assert acc == pytest.approx(_direct_accuracy(spec.model_path(name), 200))
        assert spec.variant(name).accuracy.kind == AccuracyKind.MEASURED
        assert spec.variant(name).accuracy.source == "Fashion-MNIST test set, 200 images"
        assert spec.accuracy_of(name) == pytest.approx(acc)
    assert got["fnet-l"] > 0.85


def _small_pool(fashion_pool: Path, tmp_path: Path, names: list[str]) -> Path:
    data = yaml.safe_load(fashion_pool.read_text())
    data["variants"] = [v for v in data["variants"] if v["name"] in names]
    for v in data["variants"]:
        v["path"] = str(fashion_pool.parent / v["path"])
    data["labels"] = str(fashion_pool.parent / data["labels"])
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@needs_data
def test_quantize_static_measures_int8_accuracy(fashion_pool: Path, tmp_path: Path) -> None:
    small = _small_pool(fashion_pool, tmp_path, ["fnet-xs"])
    spec = load_pool_spec(quantize_pool(small, tmp_path / "q", "fashion-test", limit=300))
    assert spec.variant_names() == ["fnet-xs", "fnet-xs-int8"]
    int8 = spec.variant("fnet-xs-int8").accuracy
    assert int8.kind == AccuracyKind.MEASURED and int8.source.endswith("300 images")
    assert abs(int8.value - spec.accuracy_of("fnet-xs")) < 0.05
    assert int8.value == pytest.approx(_direct_accuracy(spec.model_path("fnet-xs-int8"), 300))
    (row,) = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert row["method"] == "static" and row["int8_ms"] > 0
    assert row["agreement_inputs"] == 300 and row["agreement"] >= 0.9  # same answers, mostly
    assert (tmp_path / "q" / "classes.txt").is_file()


@pytest.mark.parametrize("method", ["static", "dynamic"])
def test_quantize_without_labels_keeps_the_declared_figure(
    tiny_pool_path: Path, tmp_path: Path, method: str
) -> None:
    spec = load_pool_spec(quantize_pool(tiny_pool_path, tmp_path / "q",
                                        method=method))  # type: ignore[arg-type]
    assert len(spec.variants) == 6
    for name in ("tiny-s", "tiny-m", "tiny-l"):
        int8 = spec.variant(f"{name}-int8").accuracy
        assert int8.kind == AccuracyKind.DECLARED and "not measured" in int8.source
        assert int8.value == spec.accuracy_of(name)
    rows = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert {r["method"] for r in rows} == {method}
    assert all(r["agreement_inputs"] == 64 and 0.0 <= r["agreement"] <= 1.0 for r in rows)


def test_quantize_with_bf16_adds_an_openvino_run_of_each_file(
    tiny_pool_path: Path, tmp_path: Path
) -> None:
    """--bf16: a `<name>-bf16` variant on the fp32 file, run by OpenVINO in bf16, declared at
    the fp32 figure, its latency and agreement in the same report row; pruning copies a file
    that two kept variants run once."""
    spec = load_pool_spec(quantize_pool(tiny_pool_path, tmp_path / "q", bf16=True))
    assert len(spec.variants) == 9
    for name in ("tiny-s", "tiny-m", "tiny-l"):
        v = spec.variant(f"{name}-bf16")
        assert (v.engine, v.precision, v.path) == ("openvino", "bf16", f"{name}.onnx")
        assert v.accuracy.kind == AccuracyKind.DECLARED and "not measured" in v.accuracy.source
        assert v.accuracy.value == spec.accuracy_of(name)
    rows = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert all(r["bf16_variant"] == f"{r['variant']}-bf16" and r["bf16_ms"] > 0
               and 0.0 <= r["bf16_agreement"] <= 1.0 for r in rows)
    latency = {n: 1.0 + 0.1 * i for i, n in enumerate(spec.variant_names())}
    latency.update({"tiny-s": 0.1, "tiny-l": 0.5, "tiny-l-bf16": 0.5})  # a tie keeps both
    pruned = load_pool_spec(prune_pool(tmp_path / "q" / "pool.yaml", tmp_path / "p",
                                       latency_ms=latency))
    assert pruned.variant_names() == ["tiny-s", "tiny-l", "tiny-l-bf16"]
    assert pruned.variant("tiny-l-bf16").engine == "openvino"
    assert pruned.variant("tiny-l-bf16").path == pruned.variant("tiny-l").path == "tiny-l.onnx"
    assert sorted(p.name for p in (tmp_path / "p").glob("*.onnx")) == ["tiny-l.onnx",
                                                                       "tiny-s.onnx"]


def test_pareto_decisions() -> None:
    lat = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 2.0}
    acc = {"a": 0.6, "b": 0.7, "c": 0.8, "d": 0.8}
    kept = {d.variant: d.kept for d in pareto_decisions(lat, acc)}
    assert kept == {"a": True, "b": False, "c": True, "d": True}  # exact ties keep both
    kept = {d.variant: d.kept for d in pareto_decisions({"a": 1.0, "b": 1.0}, {"a": .5, "b": .6})}
    assert kept == {"a": False, "b": True}  # as fast and less accurate: dominated


def test_prune_drops_a_slower_less_accurate_variant(tiny_pool_path: Path, tmp_path: Path) -> None:
    # declared accuracies: tiny-s 0.60, tiny-m 0.70, tiny-l 0.80
    latency = {"tiny-s": 0.1, "tiny-m": 0.5, "tiny-l": 0.3}
    spec = load_pool_spec(prune_pool(tiny_pool_path, tmp_path / "p", latency_ms=latency))
    assert spec.variant_names() == ["tiny-s", "tiny-l"]
    # pruned again into the same folder, tiny-l now the fastest: tiny-s's file goes with it
    spec = load_pool_spec(prune_pool(tiny_pool_path, tmp_path / "p", latency_ms={
        "tiny-s": 0.1, "tiny-m": 0.2, "tiny-l": 0.05}))
    assert spec.variant_names() == ["tiny-l"]
    assert sorted(p.name for p in (tmp_path / "p").glob("*.onnx")) == ["tiny-l.onnx"]
    report = {d["variant"]: d for d in json.loads((tmp_path / "p" / "prune.json").read_text())}
    assert not report["tiny-m"]["kept"] and "dominated by tiny-l" in report["tiny-m"]["reason"]
    assert all((tmp_path / "p" / v.path).is_file() for v in spec.variants)


def test_prune_measures_latency_when_not_given(tiny_pool_path: Path, tmp_path: Path) -> None:
    spec = load_pool_spec(prune_pool(tiny_pool_path, tmp_path / "p", latency_ms={"tiny-s": 0.0}))
    report = json.loads((tmp_path / "p" / "prune.json").read_text())
    assert all(d["latency_ms"] > 0 for d in report if d["variant"] != "tiny-s")
    assert "tiny-s" in spec.variant_names()  # fastest (given 0 ms) is never dominated
    with pytest.raises(SpecError, match="not in"):
        prune_pool(tiny_pool_path, tmp_path / "p2", latency_ms={"nope": 1.0})


def _flat(text: str) -> str:
    """Rich wraps long lines to the terminal width; compare with whitespace collapsed."""
    return " ".join(text.split())


@needs_data
def test_cli_build_evaluate_prune(tmp_path: Path) -> None:
    app = gearshift_app
    r = runner.invoke(app, ["zoo", "build", "fashion", "--out", str(tmp_path / "zoo")])
    assert r.exit_code == 0, r.output
    spec_path = tmp_path / "zoo" / "pool.yaml"
    r = runner.invoke(app, ["evaluate", str(spec_path), "--data", "fashion-test",
                            "--limit", "100", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "fnet-l" in r.output and "100 images" in _flat(r.output)
    r = runner.invoke(app, ["zoo", "prune", str(spec_path), "--out", str(tmp_path / "pruned")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pruned" / "pool.yaml").is_file()


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    app = gearshift_app
    r = runner.invoke(app, ["zoo", "build", "fashion", "--out", str(tmp_path / "z"), "--retrain",
                            "--data-dir", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "dataset-fashion-mnist" in _flat(r.output)
    r = runner.invoke(app, ["zoo", "quantize", str(tmp_path / "nope.yaml"), "--out",
                            str(tmp_path)])
    assert r.exit_code == 2 and "does not exist" in _flat(r.output)
