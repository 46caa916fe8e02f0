"""The ResNet zoo: torchvision layout, ONNX export checked against torch, reuse, weights folders.

Builds only ResNet-18 at 64x64 pixels (a few seconds each) so the file runs in well under a
minute on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gearshift.errors import SpecError
from gearshift.types import AccuracyKind
from gearshift.zoo.resnet import (  # imports without torch
    build_resnet_pool,
    find_weights,
    int8_accuracy,
    make_resnet,
    resnet,
    resnet_pool_spec,
)
from gearshift.zoo.spec import load_pool_spec

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

SIZE = 64


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def _torch_logits(model: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _images(batch: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str]] = []

    def __call__(self, done: int, total: int, message: str) -> None:
        self.calls.append((done, total, message))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _Recorder]:
    out = tmp_path_factory.mktemp("resnet_pool")
    recorder = _Recorder()
    build_resnet_pool(out, image_size=SIZE, depths=(18,), progress=recorder)
    return out, recorder


# --- (a) architecture -----------------------------------------------------------------------


def test_import_does_not_need_torch() -> None:
    code = "import sys, gearshift.zoo.resnet; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resnet18_state_dict_has_torchvision_layout() -> None:
    sd = resnet(18).state_dict()
    # 6 stem + layer1 2x12 + layers2-4 3x(18 + 12) + fc 2 = 122
    assert len(sd) == 122
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.conv1.weight"] == (128, 64, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["layer4.1.bn2.running_var"] == (512,)
    assert shapes["fc.weight"] == (1000, 512)
    assert "layer1.0.downsample.0.weight" not in sd
    assert "layer1.0.conv3.weight" not in sd
    assert sum(p.numel() for p in resnet(18).parameters()) == 11_689_512  # torchvision's figure


def test_resnet50_state_dict_has_torchvision_layout() -> None:
    model = resnet(50)
    sd = model.state_dict()
    # 6 stem + 16 blocks x 18 + 4 downsamples x 6 + fc 2 = 320
    assert len(sd) == 320
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["layer1.0.conv1.weight"] == (64, 64, 1, 1)
    assert shapes["layer1.0.conv3.weight"] == (256, 64, 1, 1)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer1.0.downsample.1.running_mean"] == (256,)
    assert shapes["layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["layer3.5.bn3.weight"] == (1024,)
    assert shapes["layer4.2.bn3.running_var"] == (2048,)
    assert shapes["layer4.0.downsample.0.weight"] == (2048, 1024, 1, 1)
    assert shapes["fc.weight"] == (1000, 2048)
    assert "layer4.0.downsample.1.num_batches_tracked" in sd
    assert "layer3.6.conv1.weight" not in sd  # [3, 4, 6, 3] blocks
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision's figure
    names = {n for n, _ in model.named_children()}
    assert names == {"conv1", "bn1", "relu", "maxpool", "avgpool", "fc"} | {
        f"layer{i}" for i in range(1, 5)
    }


def test_unknown_depth_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="choose from 18, 34, 50, 101, 152"):
        resnet(20)


# --- (b, c) build and reuse -----------------------------------------------------------------


def test_build_writes_a_loadable_pool(built: tuple[Path, _Recorder]) -> None:
    out, recorder = built
    assert (out / "resnet18.onnx").is_file()
    spec = load_pool_spec(out / "pool.yaml", check_models=True)
    assert spec.application == "imagenet-resnet"
    assert spec.variant_names() == ["resnet18"]
    assert spec.input.name == "input" and spec.input.shape == [3, SIZE, SIZE]
    assert spec.input.preprocessing.resize == int(SIZE / 0.875)
    assert spec.input.preprocessing.crop == SIZE
    assert spec.deadline_ms == 300.0 and spec.labels is None
    acc = spec.variant("resnet18").accuracy
    assert acc.value == pytest.approx(0.69758) and acc.kind.value == "declared"
    assert acc.metric == "top1" and "random weights" in acc.source
    assert recorder.calls[-1][:2] == (1, 1)
    assert [c[0] for c in recorder.calls] == sorted(c[0] for c in recorder.calls)


def test_onnx_output_equals_torch(built: tuple[Path, _Recorder]) -> None:
    out, _ = built
    model = make_resnet(18, image_size=SIZE, seed=0)  # the same seeded model the build exported
    x = _images(3)  # a batch size the export never saw: the batch axis is dynamic
    got = _ort_logits(out / "resnet18.onnx", x)
    assert got.shape == (3, 1000)
    np.testing.assert_allclose(got, _torch_logits(model, x), atol=1e-3, rtol=1e-3)


def test_second_build_reuses_the_file(built: tuple[Path, _Recorder]) -> None:
    out, _ = built
    onnx_path = out / "resnet18.onnx"
    before = onnx_path.stat().st_mtime_ns
    recorder = _Recorder()
    build_resnet_pool(out, image_size=SIZE, depths=(18,), progress=recorder)
    assert onnx_path.stat().st_mtime_ns == before
    assert any("reused" in message for _, _, message in recorder.calls)
    sidecar = json.loads((out / "resnet18.onnx.json").read_text())
    assert sidecar["args"]["weights"] == "random" and sidecar["args"]["image_size"] == SIZE


def test_changed_arguments_rebuild(tmp_path: Path, built: tuple[Path, _Recorder]) -> None:
    out, _ = built
    for name in ("resnet18.onnx", "resnet18.onnx.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    before = (tmp_path / "resnet18.onnx").read_bytes()
    build_resnet_pool(tmp_path, image_size=SIZE, depths=(18,), seed=1)
    assert (tmp_path / "resnet18.onnx").read_bytes() != before
    assert json.loads((tmp_path / "resnet18.onnx.json").read_text())["args"]["seed"] == 1


# --- (d, e) weights folders -----------------------------------------------------------------


def test_weights_folder_is_loaded(tmp_path: Path) -> None:
    torch.manual_seed(1234)
    model = resnet(18)
    for module in model.modules():  # non-trivial BN statistics, so loading them is tested too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(model.state_dict(), weights / "resnet18-f37072fd.pth")
    out = tmp_path / "pool"
    pool = build_resnet_pool(out, weights=weights, image_size=SIZE, depths=(18,))
    x = _images(2, seed=3)
    got = _ort_logits(out / "resnet18.onnx", x)
    np.testing.assert_allclose(got, _torch_logits(model, x), atol=1e-3, rtol=1e-3)
    source = load_pool_spec(pool).variant("resnet18").accuracy.source
    assert "resnet18-f37072fd.pth" in source and "declared" in source
    assert json.loads((out / "resnet18.onnx.json").read_text())["args"]["weights"].startswith(
        "sha256:"
    )


def test_weights_folder_without_the_file_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "resnet152-394f9c45.pth").write_bytes(b"not used")
    with pytest.raises(SpecError, match=r"resnet18\*\.pth"):
        build_resnet_pool(tmp_path / "out", weights=tmp_path, image_size=SIZE, depths=(18,))
    assert not (tmp_path / "out").exists()  # checked before anything is built


def test_find_weights_does_not_confuse_depths(tmp_path: Path) -> None:
    for name in ("resnet101-63fe2227.pth", "resnet152-394f9c45.pth", "wide_resnet50_2.pth"):
        (tmp_path / name).write_bytes(b"")
    assert find_weights(tmp_path, 101).name == "resnet101-63fe2227.pth"
    with pytest.raises(SpecError, match="no file for ResNet-50"):
        find_weights(tmp_path, 50)


def test_wrong_state_dict_is_a_spec_error(tmp_path: Path) -> None:
    torch.save(resnet(18).state_dict(), tmp_path / "resnet34-b627a593.pth")
    with pytest.raises(SpecError, match="not a torchvision ResNet-34 state dict"):
        make_resnet(34, weights=tmp_path / "resnet34-b627a593.pth", image_size=SIZE)


def test_top5_metric_declares_top5_figures() -> None:
    spec = resnet_pool_spec([18, 152], metric="top5")
    assert [v.accuracy.value for v in spec.variants] == [0.89078, 0.94046]
    assert all(v.accuracy.metric == "top5" for v in spec.variants)
    assert spec.input.preprocessing.resize == 256


def test_state_dict_without_num_batches_tracked_loads(tmp_path: Path) -> None:
    """Older torchvision files (plain dicts, no BN counters) still load with strict=True."""
    torch.manual_seed(5)
    state = {k: v for k, v in resnet(18).state_dict().items() if "num_batches_tracked" not in k}
    assert len(state) == 122 - 20  # 20 BatchNorms in ResNet-18
    torch.save(state, tmp_path / "resnet18-5c106cde.pth")
    model = make_resnet(18, weights=tmp_path / "resnet18-5c106cde.pth", image_size=SIZE)
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


# --- (e) int8 copies ------------------------------------------------------------------------

def test_int8_copy_declares_the_published_figure_and_agrees_with_fp32(
        built: tuple[Path, _Recorder], tmp_path: Path) -> None:
    """Static int8 on seeded noise: the ResNet-18 copy declares torchvision's published int8
    figure, is served by ONNX Runtime, and its top-1 class mostly agrees with fp32's."""
    from gearshift.zoo.prepare import quantize_pool

    pool, _ = built
    spec = load_pool_spec(quantize_pool(pool / "pool.yaml", tmp_path / "q"))
    assert spec.variant_names() == ["resnet18", "resnet18-int8"]
    acc = spec.variant("resnet18-int8").accuracy
    assert acc.kind == AccuracyKind.DECLARED and acc.value == 0.69494
    assert "ResNet18_QuantizedWeights" in acc.source and "not measured" in acc.source
    (row,) = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert row["method"] == "static" and row["agreement_inputs"] == 64
    assert 0.5 <= row["agreement"] <= 1.0  # random weights: near-tied logits may flip
    x = _images(2, seed=5)
    assert _ort_logits(spec.model_path("resnet18-int8"), x).shape == (2, 1000)


def test_int8_accuracy_for_depths_without_a_published_figure() -> None:
    spec = resnet_pool_spec([34, 152])
    for v in spec.variants:
        acc = int8_accuracy(v.name, v.accuracy)
        assert acc is not None and acc.kind == AccuracyKind.DECLARED
        assert acc.value == pytest.approx(v.accuracy.value - 0.00326)
        assert "no int8" in acc.source
    top5 = resnet_pool_spec([50], metric="top5").variants[0]
    assert int8_accuracy(top5.name, top5.accuracy).value == 0.92814  # type: ignore[union-attr]
    other = spec.variants[0].accuracy.model_copy(update={"source": "measured elsewhere"})
    assert int8_accuracy("resnet34", other) is None  # not torchvision's figure: unknown
    assert int8_accuracy("mynet", spec.variants[0].accuracy) is None


def test_int8_calibrates_and_compares_on_given_inputs(
        built: tuple[Path, _Recorder], tmp_path: Path) -> None:
    from gearshift.zoo.prepare import quantize_pool

    pool, _ = built
    np.save(tmp_path / "x.npy", _images(20, seed=9))
    quantize_pool(pool / "pool.yaml", tmp_path / "q", inputs=tmp_path / "x.npy")
    (row,) = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert row["agreement_inputs"] == 20 and "x.npy" in row["agreement_on"]
    np.save(tmp_path / "bad.npy", np.zeros((3, 3, 8, 8), np.float32))
    with pytest.raises(SpecError, match=r"shape \(3, 3, 8, 8\)"):
        quantize_pool(pool / "pool.yaml", tmp_path / "q2", inputs=tmp_path / "bad.npy")
