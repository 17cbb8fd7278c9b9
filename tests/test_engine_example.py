"""``docs/engine-example.md`` runs as written: on a small CNN trained on scikit-learn's digits,
the cross-entropy EOT attack flips most predictions within its L-inf budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from .helpers import REPO

EXAMPLE = REPO / "docs" / "engine-example.md"


def example_namespace() -> dict[str, Any]:
    """Execute the example's Python block; return its globals."""
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLE.read_text(), flags=re.S)
    assert len(blocks) == 1, "the example must hold exactly one python block"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(EXAMPLE), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, Tensor, Tensor]:
    """A small CNN trained for a few seconds on 8x8 digits; held-out images and labels."""
    datasets = pytest.importorskip("sklearn.datasets")
    torch.set_num_threads(1)  # tiny convolutions: threads only contend
    data = datasets.load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    torch.manual_seed(0)
    order = torch.randperm(len(x))
    train, test = order[:1400], order[1400:]
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 16, 10),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):  # full batch; ~3 s on one thread
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x[train]), y[train]).backward()
        optimiser.step()
    model.eval().requires_grad_(False)
    accuracy = (model(x[test]).argmax(1) == y[test]).float().mean()
    assert accuracy > 0.9, accuracy
    return model, x[test], y[test]


def test_example_flips_most_predictions_within_budget(
    digits: tuple[nn.Module, Tensor, Tensor],
) -> None:
    model, images, labels = digits
    right = model(images).argmax(1) == labels
    images, labels = images[right][:150], labels[right][:150]
    namespace = example_namespace()
    attack: Callable[..., tuple[Tensor, Any]] = namespace["attack_classifier"]
    spec = namespace["SPEC"]
    adv, result = attack(model, images, labels)
    assert (adv - images).abs().max() <= spec.eps + 1e-6
    flipped = (model(adv).argmax(1) != labels).float().mean()
    assert flipped > 0.8, flipped
    assert result.done.float().mean() > 0.5 and (result.steps < spec.steps).any()  # early stop
    targeted, _ = attack(model, images[:40], torch.full((40,), 3), targeted=True)
    assert (model(targeted).argmax(1) == 3).float().mean() > 0.5
