"""What makes CAPTCHA generation fast: batch norms folded into convolutions, the routed
ensemble (one model per EOT copy); and the docs matching the shipped weights' training runs.
(The shifted-slice blur and median are tested in ``tests/test_engine_filters.py``.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import Tensor

from models.ocr import load_manifest, load_ocr
from workers.engine import (
    EOT,
    Ensemble,
    Expectation,
    Identity,
    ObjectiveValue,
    TransformContext,
)
from workers.engine.fold import attack_copy, fold_batchnorm
from workers.engine.routing import RoutedEnsemble

DOCS = Path(__file__).resolve().parents[1] / "docs" / "captcha.md"


@pytest.mark.parametrize("name", ["cnn", "crnn", "lstm"])
@pytest.mark.parametrize("make", [fold_batchnorm, attack_copy])
def test_attack_copies_compute_the_same_function(name: str, make: object) -> None:
    model = load_ocr(name)
    folded = make(model)  # type: ignore[operator]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # untouched
    assert not any(p.requires_grad for p in folded.parameters()) and not folded.training
    x = torch.rand((2, 3, 60, 160), generator=torch.Generator().manual_seed(2))
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_a, out_b = model(a), folded(b)
    assert torch.allclose(out_a, out_b, atol=1e-4)
    out_a.log_softmax(-1)[..., 1].sum().backward()
    out_b.log_softmax(-1)[..., 1].sum().backward()
    assert a.grad is not None and b.grad is not None
    assert torch.allclose(a.grad, b.grad, atol=1e-4 * float(a.grad.abs().max()))


class _Member:
    """A fake model objective: loss ``value`` per row, records the rows it read."""

    def __init__(self, value: float, done: bool = True) -> None:
        self.value, self.done = value, done
        self.rows: list[int] = []

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        self.rows.extend(ctx.index.tolist())
        loss = x.flatten(1).sum(1) * 0 + self.value
        return ObjectiveValue(loss, torch.full((len(x),), self.done))


def test_routed_ensemble_sends_each_row_to_one_member_rotating() -> None:
    members = [_Member(1.0), _Member(2.0), _Member(3.0, done=False)]
    routed = RoutedEnsemble([(m, 1.0) for m in members])
    x = torch.zeros(4, 3, 2, 2)
    ctx = TransformContext.of_batch(4)
    eot = EOT(Identity(), samples=3)  # each sample's 3 copies go to 3 different members
    value = Expectation(routed, eot)(x, ctx, torch.Generator().manual_seed(0))
    assert sorted(r for m in members for r in m.rows) == sorted([0, 1, 2, 3] * 3)
    for m in members:
        assert sorted(m.rows) == [0, 1, 2, 3]  # every member saw every sample once
    assert torch.allclose(value.loss, torch.full((4,), 2.0))  # = the plain ensemble mean
    plain = Expectation(Ensemble([(_Member(v), 1.0) for v in (1.0, 2.0, 3.0)]), eot)
    assert torch.allclose(plain(x, ctx, torch.Generator()).loss, value.loss)
    assert not value.done.any()  # the third member is never done


def test_routed_ensemble_weights_and_offsets() -> None:
    members = [_Member(1.0), _Member(4.0)]
    routed = RoutedEnsemble([(members[0], 3.0), (members[1], 1.0)])
    gen = torch.Generator().manual_seed(0)
    offsets = {int(routed.routes(2, gen)[0]) for _ in range(32)}
    assert offsets == {0, 1}  # the rotation's start is drawn per call
    value = routed(torch.zeros(2, 1, 1, 1), TransformContext.of_batch(2), gen)
    assert float(value.loss.mean()) == pytest.approx((3 * 1.0 + 1 * 4.0) / 4)
    with pytest.raises(ValueError):
        RoutedEnsemble([])


def _same(doc: str, recorded: object) -> bool:
    try:
        return float(doc) == float(recorded)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return doc == recorded


def test_docs_train_commands_match_the_shipped_weights() -> None:
    text = DOCS.read_text().replace("\\\n", " ")
    commands = re.findall(r"facecloak captcha train (\w+) ([^\n]*)", text)
    manifest = load_manifest()
    assert sorted(name for name, _ in commands) == sorted(manifest)
    for name, rest in commands:
        args = dict(re.findall(r"--([\w-]+) (\S+)", rest))
        train = manifest[name]["train"]
        assert args["arch"] == train["arch"] == manifest[name]["arch"], name
        assert int(args["steps"]) == train["steps"], name
        for key, value in args.items():
            assert _same(value, train[key.replace("-", "_")]), (name, key)
