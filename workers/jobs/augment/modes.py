"""The generated samples of each mode: adversarial + mediate, rebalancing, and the held-out split.

Every generated image comes with a label and a manifest row saying how it was made
(``kind``, source image and class, target, ``phi``, whether the attack reached its goal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from facecloak.contract.augment import AugmentOptions
from workers.engine import AttackSpec
from workers.jobs.augment.attack import attack, mediate, quantised


@dataclass
class Generated:
    """Generated images ``[M, C, H, W]``, labels ``[M]`` and one manifest row each."""

    x: Tensor
    y: Tensor
    entries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def empty(cls, like: Tensor) -> Generated:
        return cls(like[:0].clone(), torch.zeros(0, dtype=torch.long))

    def add(self, x: Tensor, y: Tensor, entries: list[dict[str, Any]]) -> None:
        """Append images, labels and rows."""
        self.x = torch.cat([self.x, x])
        self.y = torch.cat([self.y, y.long()])
        self.entries.extend(entries)

    def per_class(self, classes: int) -> list[int]:
        """How many generated images each class received."""
        return torch.bincount(self.y, minlength=classes).tolist()


def _row(
    kind: str, src: str, src_label: str, label: str, target: str | None, phi: float, ok: bool
) -> dict[str, Any]:
    return {
        "kind": kind, "source": src, "source_label": src_label, "label": label,
        "target": target, "phi": phi, "reached": ok,
    }  # fmt: skip


def adversarial(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    names: list[str],
    classes: list[str],
    spec: AttackSpec,
    options: AugmentOptions,
) -> tuple[Generated, Tensor | None]:
    """Adversarial and mediate samples of every image (untargeted, or one per target class);
    also the untargeted ``delta`` (None when targeted) for reuse."""
    out = Generated.empty(x)
    runs: list[tuple[int | None, Tensor]] = []
    if options.targets:
        for t in options.targets:
            runs.append((t, torch.nonzero(y != t).flatten()))
    else:
        runs.append((None, torch.arange(len(x))))
    untargeted: Tensor | None = None
    for target, idx in runs:
        xs, ys = x[idx], y[idx]
        if target is None:
            hit = attack(model, xs, ys, spec, seed=options.seed)
            untargeted = hit.delta
        else:
            goal = torch.full_like(ys, target)
            hit = attack(model, xs, goal, spec, True, options.seed + target, options.confidence)
        adv = quantised(xs + hit.delta)
        with torch.no_grad():
            reached = model(adv).argmax(1)
        label = ys if options.adversarial_label == "source" else reached
        tname = classes[target] if target is not None else None
        out.add(adv, label, [
            _row("adversarial", names[int(i)], classes[int(s)], classes[int(lab)], tname, 1.0,
                 bool(d))
            for i, s, lab, d in zip(idx, ys, label, hit.done, strict=True)
        ])  # fmt: skip
        for phi in options.phi:
            out.add(mediate(xs, hit.delta, phi), ys, [
                _row("mediate", names[int(i)], classes[int(s)], classes[int(s)], tname, phi,
                     bool(d))
                for i, s, d in zip(idx, ys, hit.done, strict=True)
            ])  # fmt: skip
    return out, untargeted


def shifted(x: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` random picks of ``x`` (indices too), each rolled by up to one pixel per axis."""
    pick = torch.randint(len(x), (n,), generator=gen)
    out = x[pick].clone()
    for i, (dy, dx) in enumerate(torch.randint(-1, 2, (n, 2), generator=gen).tolist()):
        out[i] = torch.roll(out[i], (dy, dx), (-2, -1))
    return out, pick


def closest_other(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per image, the class other than ``y`` with the highest logit (its nearest confusion)."""
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 512]) for i in range(0, len(x), 512)])
    logits[torch.arange(len(y)), y] = -torch.inf
    return logits.argmax(1)


def short_classes(y: Tensor, count: int, options: AugmentOptions) -> list[tuple[int, int]]:
    """``(class, images it needs)`` for each class below ``share`` of the largest class
    (only ``options.targets`` when given)."""
    counts = torch.bincount(y, minlength=count)
    goal = math.ceil(options.share * int(counts.max()))
    return [
        (t, goal - int(counts[t]))
        for t in range(count)
        if goal > int(counts[t]) and not (options.targets and t not in options.targets)
    ]


def rebalance(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    names: list[str],
    classes: list[str],
    spec: AttackSpec,
    options: AugmentOptions,
) -> tuple[Generated, list[str]]:
    """Fill each class below ``share`` of the largest up to that count with engine-made
    examples of its own images: a copy shifted by up to one pixel, attacked toward the
    class the model finds closest to it, scaled back to a mediate sample ``x + phi*delta``
    (``phi`` cycling through ``options.phi``) and labelled with its own class.
    Returns the samples and notes on classes that could not be filled (no images)."""
    gen = torch.Generator().manual_seed(options.seed)
    out, notes = Generated.empty(x), []
    for t, need in short_classes(y, len(classes), options):
        own = torch.nonzero(y == t).flatten()
        if not len(own):
            notes.append(f"class {classes[t]}: no images to make examples from")
            continue
        xs, pick = shifted(x[own], need, gen)
        label = torch.full((need,), t)
        aim = closest_other(model, xs, label)
        hit = attack(model, xs, aim, spec, True, options.seed + t, options.confidence)
        phis = [options.phi[i % len(options.phi)] for i in range(need)]
        scale = torch.tensor(phis, dtype=xs.dtype).view(-1, *([1] * (xs.dim() - 1)))
        out.add(quantised(xs + scale * hit.delta), label, [
            _row("rebalance", names[int(own[i])], classes[t], classes[t], classes[int(a)], phi,
                 bool(d))
            for i, a, phi, d in zip(pick, aim, phis, hit.done, strict=True)
        ])  # fmt: skip
    return out, notes


def rebalance_from_rich(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    names: list[str],
    classes: list[str],
    spec: AttackSpec,
    options: AugmentOptions,
) -> tuple[Generated, list[str]]:
    """Rebalancing as in the seed paper (``rebalance_from="others"``): targeted examples from
    the well-represented classes toward each class below ``share`` of the largest, labelled with
    the target, until it reaches that count. Returns the samples and notes on classes left
    short (attacks that failed)."""
    counts = torch.bincount(y, minlength=len(classes))
    rich = torch.nonzero(counts >= math.ceil(options.share * int(counts.max()))).flatten()
    gen = torch.Generator().manual_seed(options.seed)
    out, notes = Generated.empty(x), []
    for t, need in short_classes(y, len(classes), options):
        pool = torch.nonzero(torch.isin(y, rich) & (y != t)).flatten()
        if not len(pool):
            pool = torch.nonzero(counts[y] > counts[t]).flatten()
        if not len(pool):
            continue
        cand = pool[torch.randint(len(pool), (2 * need,), generator=gen)]
        aim = torch.full((len(cand),), t)
        hit = attack(model, x[cand], aim, spec, True, options.seed + t, options.confidence)
        order = torch.argsort((~hit.done).int(), stable=True)[:need]
        ok = order[hit.done[order]]
        if len(ok) < need:
            notes.append(f"class {classes[t]}: {len(ok)} of {need} targeted attacks reached it")
        src = cand[ok]
        out.add(quantised(x[src] + hit.delta[ok]), torch.full((len(ok),), t), [
            _row("rebalance", names[int(i)], classes[int(y[i])], classes[t], classes[t], 1.0, True)
            for i in src
        ])  # fmt: skip
    return out, notes


def holdout_split(y: Tensor, share: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train, held-out) indices: ``share`` of each class (at least one image of a class with
    two or more) held out."""
    gen = torch.Generator().manual_seed(seed)
    train, held = [], []
    for k in torch.unique(y):
        idx = torch.nonzero(y == k).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        cut = min(len(idx) - 1, max(1, round(share * len(idx)))) if len(idx) > 1 else 0
        held.append(idx[:cut])
        train.append(idx[cut:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values
