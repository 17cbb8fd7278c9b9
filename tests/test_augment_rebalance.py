"""Rebalancing: shifted copies, the closest other class, mediate examples of the minority
images, the first form (from the rich classes) and the bench's seed ranges and table."""
# ruff: noqa: F811 (pytest fixtures imported from tests.augment_fixtures)

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from facecloak.contract.augment import AugmentOptions
from models.classifier import load_classifier
from tests.augment_fixtures import NAMES, digits8, digits_onnx, subset  # noqa: F401
from workers.jobs.augment import bench
from workers.jobs.augment.attack import attack_spec
from workers.jobs.augment.modes import closest_other, rebalance, rebalance_from_rich, shifted

Digits = tuple[Tensor, Tensor]
SHIFTS = list(itertools.product((-1, 0, 1), repeat=2))


def _skewed(digits8: Digits) -> tuple[Tensor, Tensor]:
    x, y = subset(digits8, 6)
    keep = (y != 3) | (torch.arange(len(y)) % 3 == 0)  # class 3: 2 of 6 images
    return x[keep], y[keep]


def test_shifted_copies_are_rolled_by_at_most_one_pixel() -> None:
    x = torch.rand(5, 1, 6, 6)
    out, pick = shifted(x, 40, torch.Generator().manual_seed(0))
    assert out.shape == (40, 1, 6, 6) and pick.max() < 5
    for img, i in zip(out, pick.tolist(), strict=True):
        assert any(torch.equal(img, torch.roll(x[i], s, (-2, -1))) for s in SHIFTS)
    assert len({tuple(img.flatten().tolist()) for img in out}) > 5  # not only the originals


def test_closest_other_never_names_the_own_class() -> None:
    logits = torch.tensor([[5.0, 1.0, 2.0], [0.0, 9.0, 3.0], [1.0, 4.0, 0.0]])
    got = closest_other(lambda t: t, logits, torch.tensor([0, 1, 1]))  # type: ignore[arg-type]
    assert got.tolist() == [2, 2, 0]


def test_rebalance_makes_mediate_examples_of_the_minority_images(
    digits8: Digits, digits_onnx: bytes
) -> None:
    x, y = _skewed(digits8)
    model = load_classifier(digits_onnx).requires_grad_(False)
    options = AugmentOptions(mode="rebalance", phi=[0.25, 0.75], steps=5, eps=0.15)
    names = [f"i{i}" for i in range(len(x))]
    made, notes = rebalance(model, x, y, names, NAMES, attack_spec(options), options)
    assert made.y.tolist() == [3] * 4 and not notes
    for img, row in zip(made.x, made.entries, strict=True):
        src = x[names.index(row["source"])]
        assert int(y[names.index(row["source"])]) == 3
        bound = row["phi"] * options.eps + 1.5 / 255
        assert any(float((img - torch.roll(src, s, (-2, -1))).abs().max()) <= bound
                   for s in SHIFTS)  # fmt: skip
    assert [r["phi"] for r in made.entries] == [0.25, 0.75, 0.25, 0.75]
    absent = [*NAMES, "extra"]  # a class with no images cannot be filled
    _, notes = rebalance(model, x, y, names, absent, attack_spec(options), options)
    assert notes == ["class extra: no images to make examples from"]


def test_rebalance_from_rich_labels_targeted_examples_with_the_target(
    digits8: Digits, digits_onnx: bytes
) -> None:
    x, y = _skewed(digits8)
    model = load_classifier(digits_onnx).requires_grad_(False)
    options = AugmentOptions(mode="rebalance", eps=0.3, steps=10)
    names = [str(i) for i in range(len(x))]
    made, notes = rebalance_from_rich(model, x, y, names, NAMES, attack_spec(options), options)
    assert set(made.y.tolist()) <= {3} and (len(made.y) == 4 or notes)
    assert all(r["source_label"] != "3" and r["label"] == "3" for r in made.entries)


def test_bench_table_names_the_seeds_and_counts_wins() -> None:
    rows = [
        {"part": "rebalance", "set": "digits", "seed": s, **{
            f"{m}_{k}": v for m, v in zip(bench.MODELS, vals, strict=True)
            for k in ("minority", "overall")}}
        for s, vals in (
            (100, (0.5, 0.8, 0.7, 0.4)), (101, (0.5, 0.6, 0.7, 0.4)), (102, (0.5, 0.6, 0.6, 0.4))
        )
    ]  # fmt: skip
    table = bench.tables(rows)
    assert "| digits | 100-102 | 50.0 (50.0-50.0) |" in table
    assert "| +16.7 | +16.7 | -10.0 | 1/1/1 |" in table
    assert bench._seeds([{"seed": 0}, {"seed": 2}]) == "0,2"
