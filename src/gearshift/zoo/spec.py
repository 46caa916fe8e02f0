"""The pool spec: one application's model variants, described in YAML and validated on load.

A spec names the application, the one input every variant takes (name, per-item shape without
the batch dimension, dtype, and the preprocessing it expects), a default deadline, and the
variants, each an ONNX file (path relative to the spec) with its accuracy and where that figure
comes from. `load_pool_spec` checks everything a server would trip over later (missing files,
duplicate names, accuracy out of range, an ONNX input that does not match the declared one) and
fails with one `SpecError` naming the field and the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gearshift.errors import SpecError
from gearshift.runtime.base import PRECISIONS, Engine, ModelFile, Precision
from gearshift.types import AccuracyKind

Dtype = Literal["float32", "float16", "int64", "int32", "uint8"]
DTYPES: tuple[Dtype, ...] = ("float32", "float16", "int64", "int32", "uint8")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Preprocessing(_Strict):
    """What a client must do to raw data before sending it (documentation for clients)."""

    resize: int | None = Field(default=None, description="short side in pixels before cropping")
    crop: int | None = None
    scale: float = 1.0
    mean: list[float] | None = None
    std: list[float] | None = None
    layout: Literal["NCHW", "NHWC", "NC", "NL"] = "NCHW"
    note: str = ""


class InputSpec(_Strict):
    name: str
    shape: list[int] = Field(description="per-item shape, without the batch dimension")
    dtype: Dtype = "float32"
    preprocessing: Preprocessing = Preprocessing()

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: list[int]) -> list[int]:
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"every dimension must be a positive integer, got {shape}")
        return shape


class Accuracy(_Strict):
    value: float = Field(ge=0.0, le=1.0, description="fraction of correct answers, in [0, 1]")
    kind: AccuracyKind
    metric: str = "top1"
    source: str = Field(min_length=1, description="where the figure comes from")


class VariantSpec(_Strict):
    """One variant: its ONNX file, accuracy, and the engine and precision it runs at (default:
    ONNX Runtime at the file's own precision; `engine: openvino` with `precision: bf16` runs
    the same file in bfloat16, `pip install 'gearshift[openvino]'`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    path: str
    accuracy: Accuracy
    description: str = ""
    engine: Engine = "onnxruntime"
    precision: Precision = "native"

    @model_validator(mode="after")
    def _engine_runs_precision(self) -> VariantSpec:
        if self.precision not in PRECISIONS[self.engine]:
            raise ValueError(f"variant {self.name!r}: engine {self.engine} runs no "
                             f"{self.precision!r} precision; use "
                             f"{' or '.join(PRECISIONS[self.engine])}, or engine openvino for "
                             "bf16")
        return self


class PoolSpec(_Strict):
    """A validated pool. `root` is the folder the variant paths are relative to."""

    application: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    input: InputSpec
    output: str | None = Field(default=None, description="output to read; default: the first")
    labels: str | None = Field(default=None, description="file of class names, one per line")
    deadline_ms: float = Field(default=300.0, gt=0)
    variants: list[VariantSpec] = Field(min_length=1)
    root: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> PoolSpec:
        seen: set[str] = set()
        for v in self.variants:
            if v.name in seen:
                raise ValueError(f"variant name {v.name!r} appears twice; give each a unique name")
            if v.name == self.application:
                raise ValueError(
                    f"variant name {v.name!r} equals the application name; rename one of them"
                )
            seen.add(v.name)
        return self

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def model_path(self, name: str) -> Path:
        return (self.root / self.variant(name).path).resolve()

    def model_file(self, name: str) -> ModelFile:
        """What a runtime loads for variant `name`: its file, engine and precision."""
        v = self.variant(name)
        return ModelFile(self.model_path(name), v.engine, v.precision)

    def accuracy_of(self, name: str) -> float:
        return self.variant(name).accuracy.value

    def digest(self) -> str:
        """Hash of what determines measurements: the spec's content and every model file's bytes."""
        h = hashlib.sha256()
        h.update(self.model_dump_json(exclude={"root"}).encode())
        for v in self.variants:
            h.update(_file_digest(self.model_path(v.name)).encode())
        return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _format_validation_error(exc: ValidationError, where: Path) -> str:
    lines = [f"invalid pool spec {where}:"]
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = loc.replace(".[", "[") or "(top level)"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing; add it"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_pool_spec(data: Any, root: Path, where: Path | None = None) -> PoolSpec:
    """Validate already-parsed YAML content; paths resolve against `root`. No file checks."""
    where = where or root
    if not isinstance(data, dict):
        raise SpecError(f"invalid pool spec {where}: expected a mapping at the top level")
    try:
        return PoolSpec.model_validate({**data, "root": root})
    except ValidationError as exc:
        raise SpecError(_format_validation_error(exc, where)) from None


def load_pool_spec(path: str | Path, check_models: bool = True) -> PoolSpec:
    """Read, validate and (by default) check every model file against the declared input."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"pool spec {path} does not exist; build one with `gearshift zoo build`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"pool spec {path} is not valid YAML: {exc}") from None
    spec = parse_pool_spec(data, path.parent.resolve(), path)
    if check_models:
        check_model_files(spec, path)
    return spec


def check_model_files(spec: PoolSpec, where: Path) -> None:
    """Each variant's file exists, is ONNX, and takes the declared input (batch dim dynamic)."""
    import onnx  # local: loading a spec without checks must not need onnx

    for i, v in enumerate(spec.variants):
        field = f"variants[{i}].path"
        p = spec.model_path(v.name)
        if not p.is_file():
            raise SpecError(
                f"invalid pool spec {where}: {field}: model file {p} does not exist; "
                "fix the path (relative to the spec) or rebuild the zoo"
            )
        try:
            model = onnx.load(str(p), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
            raise SpecError(f"invalid pool spec {where}: {field}: {p} is not an ONNX model ({exc})")
        _check_input(spec, model, f"invalid pool spec {where}: variants[{i}] ({v.name})")


@dataclass(frozen=True)
class OutputInfo:
    """One output of a variant's graph: its name, numpy dtype name and shape (-1 where the
    graph leaves a dimension open)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def model_outputs(spec: PoolSpec) -> dict[str, list[OutputInfo]]:
    """Each variant's outputs, read from its ONNX graph (not its weights); a variant whose
    file cannot be read is left out."""
    import onnx  # local: loading a spec without checks must not need onnx

    found: dict[str, list[OutputInfo]] = {}
    for v in spec.variants:
        try:
            model = onnx.load(str(spec.model_path(v.name)), load_external_data=False)
        except Exception:  # noqa: BLE001, S112 - onnx raises several types for a bad file
            continue  # the pool will say why
        found[v.name] = [
            OutputInfo(o.name,
                       np.dtype(onnx.helper.tensor_dtype_to_np_dtype(
                           o.type.tensor_type.elem_type)).name,
                       tuple(d.dim_value if d.HasField("dim_value") else -1
                             for d in o.type.tensor_type.shape.dim))
            for o in model.graph.output]
    return found


def _check_input(spec: PoolSpec, model: Any, prefix: str) -> None:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    by_name = {i.name: i for i in inputs}
    if spec.input.name not in by_name:
        names = ", ".join(sorted(by_name)) or "none"
        raise SpecError(
            f"{prefix}: the model has no input named {spec.input.name!r} (it has: {names}); "
            "set input.name to the model's input"
        )
    dims = by_name[spec.input.name].type.tensor_type.shape.dim
    model_shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(model_shape) != len(spec.input.shape) + 1:
        raise SpecError(
            f"{prefix}: input.shape {spec.input.shape} has {len(spec.input.shape)} dims but the "
            f"model's input has {len(model_shape)} including the batch dim ({model_shape}); "
            "declare the per-item shape without the batch dimension"
        )
    for k, (want, got) in enumerate(zip(spec.input.shape, model_shape[1:], strict=True)):
        if got is not None and got != want:
            raise SpecError(
                f"{prefix}: input.shape {spec.input.shape} does not match the model's input "
                f"{model_shape[1:]} (dimension {k + 1}: {want} vs {got}); fix input.shape"
            )


def dump_pool_spec(spec: PoolSpec, path: str | Path) -> None:
    """Write a spec as YAML (paths stay as written, relative to the spec's folder)."""
    data = spec.model_dump(mode="json", exclude={"root"}, exclude_defaults=False)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
