"""The import rule, for every module of the package: data flows one way (zoo -> profiling ->
planning with sim -> control -> serving -> ray -> loadgen -> reports -> experiment -> cli), so a module
imports only from its own layer or those below it (at any depth, imports inside functions
included), and only the HTTP front end, the load generator and what drives them import a web
library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gearshift"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "types", "errors", "progress", "files", "cores", "heap", "records", "policy",
     "protocol", "stopping",
     "dispatch", "host_loop", "cluster"),
    ("data", "runtime"),
    ("zoo",),
    ("engine",),
    ("profiling",),
    ("sim",),
    ("planning",),
    ("control",),
    ("serving",),
    ("ray",),
    ("loadgen",),
    ("reports",),
    ("experiment",),
    ("cli", "cli_experiment", "cli_fashion", "cli_loadgen"),
)
"""Lowest first: a unit (a package, or a top-level module) may import its own layer and below.
The package's `__init__` is at the bottom: importing any module of gearshift runs it."""

WEB = ("starlette", "uvicorn", "httpx", "fastapi", "aiohttp", "httptools", "prometheus_client")
WEB_ALLOWED = {"serving", "loadgen", "experiment", "cli", "cli_loadgen", "cli_experiment"}
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(path: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path, text: str | None = None) -> list[str]:
    """Every module a file (or `text`, as if it were that file) imports, at any depth, so also
    inside functions. A relative import is resolved against the file's package; `from
    gearshift import x` counts as importing `gearshift.x` if x is a module or package, else
    (an attribute such as `__version__`) as importing `gearshift.__init__`."""
    out: list[str] = []
    rel = path.relative_to(SRC)
    package = ["gearshift", *rel.parent.parts]
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module == "gearshift":
                out.extend(f"gearshift.{a.name}" if (SRC / a.name).is_dir()
                           or (SRC / f"{a.name}.py").is_file() else "gearshift.__init__"
                           for a in node.names)
            else:
                out.append(module)
    return out


def test_package_and_relative_imports_are_seen() -> None:
    text = ("from gearshift import cli, __version__\nfrom . import roster\n"
            "from ..control import factory\nfrom .pool_types import PoolSettings\n")
    assert imports(SRC / "engine" / "pool.py", text) == [
        "gearshift.cli", "gearshift.__init__", "gearshift.engine", "gearshift.control",
        "gearshift.engine.pool_types"]


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    assert {unit_of(p) for p in SOURCES} <= set(LEVEL)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    me = unit_of(path)
    upward = [m for m in imports(path) if m.startswith("gearshift.")
              and LEVEL[m.split(".")[1]] > LEVEL[me]]
    assert not upward, f"{me} (layer {LEVEL[me]}) imports from above: {upward}"
    web = [m for m in imports(path) if m.split(".")[0] in WEB]
    assert not web or me in WEB_ALLOWED, f"{me} imports a web library: {web}"
