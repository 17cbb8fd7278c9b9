"""CAPTCHA sets as tensors: rendered once from a seed, cached on disk, batched for CTC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.ocr.architectures import ALPHABET, encode
from workers.jobs.captcha.generator import CaptchaRenderer, sample_set

DEFAULT_LENGTHS = (4, 6)


def to_tensor(images: np.ndarray) -> Tensor:
    """``[N, H, W, 3]`` uint8 -> ``[N, 3, H, W]`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(x: Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [0, 1] -> ``[N, H, W, 3]`` uint8 (rounded)."""
    return (x.detach().clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def ctc_targets(texts: list[str]) -> tuple[Tensor, Tensor]:
    """Padded class indices ``[N, S]`` and lengths ``[N]`` of ``texts``."""
    width = max(len(t) for t in texts)
    targets = torch.zeros((len(texts), width), dtype=torch.long)
    for i, text in enumerate(texts):
        targets[i, : len(text)] = torch.tensor(encode(text))
    return targets, torch.tensor([len(t) for t in texts])


def cached_set(
    count: int,
    seed: int,
    cache: Path | None = None,
    lengths: tuple[int, int] = DEFAULT_LENGTHS,
) -> tuple[np.ndarray, list[str]]:
    """``sample_set`` over :data:`ALPHABET`, kept in ``cache`` (an ``.npz`` per set)."""
    path = None
    if cache is not None:
        path = Path(cache) / f"captcha-{count}-{seed}-{lengths[0]}{lengths[1]}.npz"
        if path.exists():
            with np.load(path) as data:
                return data["images"], [str(t) for t in data["texts"]]
    images, texts = sample_set(count, lengths, ALPHABET, seed, CaptchaRenderer())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=images, texts=np.array(texts))
    return images, texts
