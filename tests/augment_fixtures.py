"""A small digits classifier with batch norms (8x8) and data sets for the augment tests."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from workers.jobs.augment import datasets

NAMES = [str(i) for i in range(10)]
FAST = {"steps": 5, "pair_samples": 2, "eps": 0.15}


@pytest.fixture(scope="session")
def digits8() -> tuple[Tensor, Tensor]:
    """All digits at 8x8 on the 8-bit grid, and labels."""
    torch.set_flush_denormal(True)
    x, y = datasets.digits(8)
    return (x * 255).round() / 255, y


@pytest.fixture(scope="session")
def digits_onnx(digits8: tuple[Tensor, Tensor]) -> bytes:
    """A BN CNN trained for a few seconds on the first 1,000 digits, as ONNX."""
    x, y = digits8
    torch.set_num_threads(1)
    model = datasets.train(x[:1000], y[:1000], 10, seed=0, epochs=4, lr=1e-2)
    return datasets.to_onnx(model, 8, NAMES)


def subset(
    digits8: tuple[Tensor, Tensor], per_class: int, start: int = 1000
) -> tuple[Tensor, Tensor]:
    """``per_class`` held-out images of each class."""
    x, y = digits8
    x, y = x[start:], y[start:]
    idx = torch.cat([torch.nonzero(y == k).flatten()[:per_class] for k in range(10)])
    return x[idx], y[idx]
