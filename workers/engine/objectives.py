"""Objectives as composable pieces; every objective returns a per-sample loss to MINIMISE and
a per-sample ``done`` flag (the sample meets its goal and may stop).

* :class:`Objective` - ``(x, ctx, gen) -> ObjectiveValue`` on an image batch.
* :class:`OutputLoss` - a loss on a model's output (embedding, logits, CTC log-probs),
  reading references and labels from the context; :class:`ModelObjective` runs the model
  once (after an optional transform) and sums its output losses.
* :class:`Ensemble` (weighted mean) and :class:`Sum` combine objectives; :class:`Expectation`
  averages an objective over EOT samples; penalties (L1, L2, total variation) measure the
  change from the clean input ``ctx["input"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.transforms import EOT, Transform, TransformContext

INPUT = "input"
"""The context entry holding the clean input of the attack (set by the attack loop)."""

Model = Callable[[Tensor], Tensor]


@dataclass
class ObjectiveValue:
    """What an objective returns for a batch of ``b`` samples."""

    loss: Tensor
    """``[b]`` per-sample loss, to MINIMISE."""
    done: Tensor
    """``[b]`` bool: the sample already meets its goal and can stop."""


class Objective(Protocol):
    """``(images [b, ...], their context, generator) -> ObjectiveValue``."""

    def __call__(
        self, x: Tensor, ctx: TransformContext, gen: torch.Generator
    ) -> ObjectiveValue: ...


class OutputLoss(Protocol):
    """``(model output [b, ...], context) -> ObjectiveValue``."""

    def __call__(self, out: Tensor, ctx: TransformContext) -> ObjectiveValue: ...


def never_done(loss: Tensor) -> Tensor:
    """A ``done`` flag that never stops a sample."""
    return torch.zeros_like(loss, dtype=torch.bool)


def always_done(loss: Tensor) -> Tensor:
    """A ``done`` flag with no objection to stopping (penalties, auxiliary pulls)."""
    return torch.ones_like(loss, dtype=torch.bool)


def cosine_similarity(emb: Tensor, ref: Tensor) -> Tensor:
    """Per-sample cosine similarity of embeddings ``[B, D]`` with ``[B, D]`` or ``[D]``."""
    emb = F.normalize(emb.flatten(1), dim=1)
    ref = F.normalize(ref.reshape(-1, emb.shape[1]), dim=1)
    return (emb * ref).sum(dim=1)


def dodging_loss(emb: Tensor, clean_emb: Tensor) -> Tensor:
    """Dodging: the similarity to the clean photo's embedding, ``[B]``; lower is better."""
    return cosine_similarity(emb, clean_emb.detach())


def impersonation_loss(emb: Tensor, target_emb: Tensor) -> Tensor:
    """Impersonation: minus the similarity to a target identity's embedding, ``[B]``."""
    return -cosine_similarity(emb, target_emb.detach())


class CosineDodging:
    """Move embeddings away from ``ctx[reference]``; done once the similarity is below
    ``threshold - margin`` (never, without a threshold).
    """

    def __init__(self, reference: str, threshold: float | None = None, margin: float = 0.0) -> None:
        self.reference, self.threshold, self.margin = reference, threshold, float(margin)

    def __call__(self, out: Tensor, ctx: TransformContext) -> ObjectiveValue:
        """Loss: the cosine similarity to the reference."""
        sim = dodging_loss(out, ctx[self.reference])
        if self.threshold is None:
            return ObjectiveValue(sim, never_done(sim))
        return ObjectiveValue(sim, sim.detach() < self.threshold - self.margin)


class CosineImpersonation:
    """Move embeddings toward ``ctx[target]``; done once the similarity reaches
    ``threshold + margin`` (always, without a threshold: then it is an auxiliary pull).
    """

    def __init__(self, target: str, threshold: float | None = None, margin: float = 0.0) -> None:
        self.target, self.threshold, self.margin = target, threshold, float(margin)

    def __call__(self, out: Tensor, ctx: TransformContext) -> ObjectiveValue:
        """Loss: minus the cosine similarity to the target."""
        loss = impersonation_loss(out, ctx[self.target])
        if self.threshold is None:
            return ObjectiveValue(loss, always_done(loss))
        return ObjectiveValue(loss, -loss.detach() >= self.threshold + self.margin)


class CrossEntropy:
    """Classifier logits ``[b, classes]`` against labels ``ctx[label]`` ``[b]``.

    Untargeted: maximise the cross-entropy of the true label, done when the prediction
    differs from it. Targeted: minimise it for the target label, done when predicted.
    With ``confidence`` the prediction must also hold with that softmax probability.
    """

    def __init__(
        self, label: str = "label", targeted: bool = False, confidence: float = 0.0
    ) -> None:
        if not 0.0 <= confidence < 1.0:
            raise ValueError(f"confidence must lie in [0, 1), got {confidence}")
        self.label, self.targeted, self.confidence = label, bool(targeted), float(confidence)

    def __call__(self, out: Tensor, ctx: TransformContext) -> ObjectiveValue:
        """Per-sample (minus) cross-entropy and the prediction check."""
        labels = ctx[self.label].to(out.device).long()
        ce = F.cross_entropy(out, labels, reduction="none")
        prob, pred = out.detach().softmax(dim=1).max(dim=1)
        hit = pred == labels
        sure = prob >= self.confidence
        return ObjectiveValue(ce, hit & sure) if self.targeted else ObjectiveValue(-ce, ~hit & sure)


def greedy_ctc_decode(log_probs: Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path decoding of ``[b, T, classes]``: argmax, merge repeats, drop blanks."""
    best = log_probs.argmax(dim=-1).tolist()
    out = []
    for path in best:
        seq = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        out.append(seq)
    return out


class CTC:
    """CTC against label sequences: ``ctx[targets]`` ``[b, S]`` (padded) with lengths
    ``ctx[lengths]`` ``[b]``; the model outputs ``[b, T, classes]`` logits.

    Untargeted: maximise the CTC loss of the true text, done once greedy decoding no longer
    reads it. Targeted: minimise it for the target text, done once it is read.
    """

    def __init__(
        self,
        targets: str = "targets",
        lengths: str = "target_lengths",
        targeted: bool = False,
        blank: int = 0,
    ) -> None:
        self.targets, self.lengths = targets, lengths
        self.targeted, self.blank = bool(targeted), int(blank)

    def __call__(self, out: Tensor, ctx: TransformContext) -> ObjectiveValue:
        """Per-sample (minus) CTC loss and the decoding check."""
        log_probs = out.log_softmax(dim=-1)
        targets, lengths = ctx[self.targets].long(), ctx[self.lengths].long()
        steps = torch.full((out.shape[0],), out.shape[1], dtype=torch.long)
        loss = F.ctc_loss(
            log_probs.transpose(0, 1),
            targets.cpu(),
            steps,
            lengths.cpu(),
            blank=self.blank,
            reduction="none",
            zero_infinity=True,
        )
        decoded = greedy_ctc_decode(log_probs.detach(), self.blank)
        truth = [t[: int(n)].tolist() for t, n in zip(targets.cpu(), lengths.cpu(), strict=True)]
        read = torch.tensor([d == t for d, t in zip(decoded, truth, strict=True)])
        read = read.to(out.device)
        return ObjectiveValue(loss, read) if self.targeted else ObjectiveValue(-loss, ~read)


class ModelObjective:
    """Run ``model`` once on ``transform(x)`` and sum the weighted output losses; done when
    every loss is done.
    """

    def __init__(
        self,
        model: Model,
        losses: Sequence[tuple[OutputLoss, float]],
        transform: Transform | None = None,
    ) -> None:
        if not losses:
            raise ValueError("a model objective needs at least one output loss")
        self.model, self.losses, self.transform = model, list(losses), transform

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """The summed loss of the model's output."""
        if self.transform is not None:
            x = self.transform(x, ctx, gen)
        out = self.model(x)
        values = [(loss(out, ctx), weight) for loss, weight in self.losses]
        return _combine(values, normalise=False)


def _combine(values: Sequence[tuple[ObjectiveValue, float]], normalise: bool) -> ObjectiveValue:
    """Weighted sum (or mean) of losses; done when all are done."""
    total = sum(weight for _, weight in values) if normalise else 1.0
    loss = torch.stack([weight * v.loss for v, weight in values]).sum(dim=0) / total
    done = torch.stack([v.done for v, _ in values]).all(dim=0)
    return ObjectiveValue(loss, done)


class Ensemble:
    """Weighted mean ``sum(w_i L_i) / sum(w_i)`` of objectives (e.g. one per model)."""

    def __init__(self, members: Sequence[tuple[Objective, float]]) -> None:
        weights = [w for _, w in members]
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        self.members = list(members)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """The weighted mean loss; done when every member is done."""
        return _combine([(obj(x, ctx, gen), w) for obj, w in self.members], normalise=True)


class Sum:
    """Plain weighted sum of objectives (a goal plus penalties)."""

    def __init__(self, members: Sequence[tuple[Objective, float]]) -> None:
        if not members:
            raise ValueError("a sum needs at least one member")
        self.members = list(members)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """``sum(w_i L_i)``; done when every member is done."""
        return _combine([(obj(x, ctx, gen), w) for obj, w in self.members], normalise=False)


class Expectation:
    """``objective`` averaged over the EOT samples of each input; done when it is done on
    every sample.
    """

    def __init__(self, objective: Objective, eot: EOT) -> None:
        self.objective, self.eot = objective, eot

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """Mean loss over ``eot.samples`` transformed copies."""
        k = self.eot.samples
        samples = self.eot(x, ctx, gen)
        value = self.objective(samples, self.eot.context(ctx), gen)
        return ObjectiveValue(value.loss.view(-1, k).mean(1), value.done.view(-1, k).all(1))


class L1Penalty:
    """``mean |x - ctx["input"]|`` per sample."""

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """The mean absolute change."""
        loss = (x - ctx[INPUT]).abs().flatten(1).mean(1)
        return ObjectiveValue(loss, always_done(loss))


class L2Penalty:
    """``||x - ctx["input"]||_2^2`` per sample."""

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """The squared L2 norm of the change."""
        loss = (x - ctx[INPUT]).flatten(1).pow(2).sum(1)
        return ObjectiveValue(loss, always_done(loss))


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation per sample (mean absolute neighbour difference)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


class TotalVariationPenalty:
    """Total variation of the change ``x - ctx["input"]`` (smooth perturbations)."""

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """The total variation of the perturbation."""
        loss = total_variation(x - ctx[INPUT])
        return ObjectiveValue(loss, always_done(loss))
