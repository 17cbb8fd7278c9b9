"""FaceNet (Inception-ResNet-v1) from its frozen TensorFlow GraphDef, as a torch module.

No TensorFlow is needed: ``graphdef_front`` converts the graph into a ``torch.fx`` module
of real ``nn.Conv2d`` / ``nn.Linear`` layers (NCHW, BiasAdd and residual scales folded
into the convs, TensorFlow SAME padding reproduced exactly, also when asymmetric). The
conversion can be cached in a folder, keyed by the model file's sha256.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, fx

from models.convert import graphdef_front
from models.convert.fx_payload import from_payload, to_payload
from models.registry import sha256_file

__all__ = ["CACHE_VERSION", "cache_file", "load_facenet", "prewhiten"]

CACHE_VERSION = 3  # bump when the payload format or the conversion changes


def prewhiten(x: Tensor) -> Tensor:
    """FaceNet's per-image standardisation: ``(x - mean) / max(std, 1/sqrt(x[i].numel()))``.

    ``x`` is (N, ...) (pixels 0..255 as in the original package); statistics are per sample
    over all other dims, std is the population std. Differentiable (also for flat images).
    """
    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[1]
    mean = flat.mean(dim=1, keepdim=True)
    var = ((flat - mean) ** 2).mean(dim=1, keepdim=True)
    std = var.clamp_min(1.0 / n).sqrt()  # == max(std, 1/sqrt(n)), finite gradient
    return ((flat - mean) / std).reshape(x.shape)


def cache_file(cache_dir: Path, path: Path, digest: str) -> Path:
    """Where the conversion of the model file ``path`` (sha256 ``digest``) is cached."""
    return cache_dir / f"{path.stem}.{digest[:32]}.v{CACHE_VERSION}.torch.pt"


def load_facenet(
    path: Path,
    *,
    cache_dir: Path | None = None,
    sha256: str | None = None,
    output: str = graphdef_front.DEFAULT_OUTPUT,
) -> fx.GraphModule:
    """FaceNet from its frozen GraphDef: (N,3,160,160) prewhitened RGB -> (N,512) L2-normalised.

    With ``cache_dir`` the conversion is saved there (``torch.save`` of plain data, loaded
    with ``weights_only``) and reused, keyed by the file's sha256 (pass ``sha256`` to skip
    hashing a file you already verified); None converts every time.
    Raises ``UnsupportedOpError`` if the graph uses an op the converter lacks.
    """
    path = Path(path)
    if cache_dir is None:
        return graphdef_front.convert_graphdef(path.read_bytes(), output)
    cache = cache_file(cache_dir, path, sha256 or sha256_file(path))
    cached = _load_cached(cache, output)
    if cached is not None:
        return cached
    module = graphdef_front.convert_graphdef(path.read_bytes(), output)
    payload = {"version": CACHE_VERSION, "output": output, "graph": to_payload(module)}
    with contextlib.suppress(OSError):  # a read-only cache only costs later loads a conversion
        _save_atomic(payload, cache)
    return module


def _load_cached(cache: Path, output: str) -> fx.GraphModule | None:
    """The cached conversion, or None when it is missing, stale or corrupt."""
    if not cache.exists():
        return None
    try:
        saved = torch.load(cache, map_location="cpu", weights_only=True, mmap=True)
        if saved.get("version") == CACHE_VERSION and saved.get("output") == output:
            return from_payload(saved["graph"])
    except Exception:  # a corrupt or stale cache is rebuilt by the caller
        pass
    return None


def _save_atomic(payload: dict[str, Any], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
