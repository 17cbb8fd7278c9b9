"""Adding a user's own ArcFace ONNX model (e.g. InsightFace w600k_r50.onnx, glintr100.onnx)."""

from __future__ import annotations

import re
from pathlib import Path

from models.errors import InvalidModelError
from models.registry import ModelStore, sha256_file, user_spec
from models.specs import SPECS, ModelSpec

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def add_user_model(name: str, path: Path, store: ModelStore) -> ModelSpec:
    """Check an ArcFace ONNX file (loads, 3x112x112 input, onnxruntime parity); add it to store."""
    from models.convert.arcface_check import check_arcface_onnx

    if not NAME.match(name):
        raise InvalidModelError(f"model name {name!r} must match {NAME.pattern}")
    if any(s.name == name for s in SPECS):
        raise InvalidModelError(f"{name!r} is a shipped model; choose another name")
    if not path.is_file():
        raise InvalidModelError(f"{path} is not a file")
    info = check_arcface_onnx(path)
    spec = user_spec(name, path, sha256_file(path), int(info["embedding_size"]))
    store.save_user_spec(spec)
    return spec
