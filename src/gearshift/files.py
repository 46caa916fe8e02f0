"""Reading the JSON files one stage hands to the next (profile, policy table), with clear errors;
and a file's digest, for the records that decide whether a built file can be reused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from gearshift.errors import SpecError

M = TypeVar("M", bound=BaseModel)


def read_json_model(path: str | Path, model: type[M], what: str, make_with: str) -> M:
    """`path` parsed as `model`; SpecError naming the file, what it should be and the command
    that makes one."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{what} {path} does not exist; make one with `{make_with}`")
    try:
        text = path.read_bytes().decode()
    except OSError as exc:  # gone or unreadable since the check
        raise SpecError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                        f"make one with `{make_with}`") from None
    try:
        return model.model_validate(json.loads(text))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise SpecError(f"{what} {path} is not a valid gearshift {what}: {exc}") from None


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of `path`'s bytes, read 1 MiB at a time (model files run to hundreds of
    MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
