"""Adding a user's own ArcFace ONNX model (e.g. InsightFace w600k_r50.onnx, glintr100.onnx)."""

from __future__ import annotations

import re
from pathlib import Path

from models.errors import InvalidModelError
from models.registry import SPECS, save_user_spec, sha256_file, user_spec
from models.specs import ModelSpec

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def add_user_model(name: str, path: Path) -> ModelSpec:
    """Check an ArcFace ONNX file (loads, 3x112x112 input, onnxruntime parity), register it."""
    from models.onnx_torch import check_arcface_onnx

    if not NAME.match(name):
        raise InvalidModelError(f"model name {name!r} must match {NAME.pattern}")
    if any(s.name == name for s in SPECS):
        raise InvalidModelError(f"{name!r} is a shipped model; choose another name")
    if not path.is_file():
        raise InvalidModelError(f"{path} is not a file")
    info = check_arcface_onnx(path)
    spec = user_spec(name, path, sha256_file(path), int(info["embedding_size"]))
    save_user_spec(spec)
    return spec
