"""The shipped OCR weights: ``weights/<name>.pt`` (a state dict) pinned by sha256 in
``weights/manifest.json``, with the architecture, measured accuracy and training command.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import ChecksumError, UnknownModelError
from models.ocr.architectures import ARCHITECTURES

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"


def load_manifest(folder: Path = WEIGHTS_DIR) -> dict[str, dict[str, Any]]:
    """Name -> entry (``arch``, ``file``, ``sha256``, accuracy, training arguments)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return data


def available(folder: Path = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped models."""
    return sorted(load_manifest(folder))


def save_weights(
    model: nn.Module, name: str, entry: dict[str, Any], folder: Path = WEIGHTS_DIR
) -> Path:
    """Write ``model``'s state dict as ``<name>.pt`` and its manifest entry (with sha256)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    data = buffer.getvalue()
    path = folder / f"{name}.pt"
    path.write_bytes(data)
    manifest = load_manifest(folder)
    manifest[name] = {**entry, "file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def load_ocr(name: str, folder: Path = WEIGHTS_DIR) -> nn.Module:
    """The model ``name`` in eval mode, its weights checked against the manifest's sha256."""
    manifest = load_manifest(folder)
    if name not in manifest:
        raise UnknownModelError(f"unknown OCR model {name!r}; shipped: {sorted(manifest)}")
    entry = manifest[name]
    data = (Path(folder) / entry["file"]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ChecksumError(f"{entry['file']}: sha256 {digest} != manifest {entry['sha256']}")
    model = ARCHITECTURES[entry["arch"]]()
    model.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
    return model.eval()
