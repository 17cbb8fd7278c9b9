"""The robust CAPTCHA attack: a composition of engine pieces.

* objective: multi-target CTC: each CAPTCHA gets a wrong text of the same length that
  differs from the answer at *every* position, and every model of the ensemble is pulled
  toward reading it (targeted :class:`CTC`);
* EOT over what an attacker's OCR pipeline does first: median filter, Gaussian blur, JPEG,
  binarisation and grayscale, each applied at random (:class:`Expectation`);
* ensemble: every EOT copy is read by every model (:class:`Ensemble`); ``routed=True``
  sends each copy to one model instead (:class:`RoutedEnsemble`: a third of the cost,
  measurably weaker on models the attack never saw, see ``docs/captcha.md``);
* budget: L-inf ``eps`` plus an SSIM floor against the base image (:class:`SsimFloor`),
  momentum sign steps, 8-bit rounding in the loop (what the PNG stores);
* input diversity (DI): each step, with probability ``spec.diversity``, the batch is
  randomly resized and padded before the EOT and the models (a transfer booster; TI
  gradient smoothing was tried too and is off, see ``docs/captcha.md``).

Speed without changing what is computed: the engine's median and blur are built from
shifted slices (:mod:`workers.engine.filters`, 3x faster on CPU than convolutions), the
models are attacked as frozen copies with batch norms folded into their convolutions and
channels-last weights (:func:`~workers.engine.fold.attack_copy`, made once by the maker),
and CAPTCHAs are attacked in batches.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.ocr.architectures import ALPHABET
from workers.engine import (
    CTC,
    AttackResult,
    AttackSpec,
    Ensemble,
    EotStep,
    Expectation,
    ModelObjective,
    TransformContext,
    build_attack,
    make_eot,
)
from workers.engine.routing import RoutedEnsemble
from workers.jobs.captcha.data import ctc_targets

ATTACKER_PREPROCESSING: tuple[EotStep, ...] = (
    EotStep("median", 0.3, {"size": 3}),
    EotStep("blur", 0.3, {"sigma": 0.8}),
    EotStep("jpeg", 0.3, {"quality": (40, 90)}),
    EotStep("grayscale", 0.3),
    EotStep("binarise", 0.5, {"threshold": (0.7, 0.9)}),
)
"""The attacker's clean-ups the perturbation must survive, each applied at random
(binarisation, the hardest to survive, more often)."""

ROBUST_STEPS = 30
ROBUST_SPEC = AttackSpec(
    eps=24 / 255,
    steps=ROBUST_STEPS,
    step_size=3 / 255,
    optimizer="momentum",
    diversity=0.7,
    resize_rate=1.1,
    eot=ATTACKER_PREPROCESSING,
    eot_samples=4,
    quantise=True,
    ssim_floor=0.55,
    check_every=ROBUST_STEPS,
)
"""The default: DI-MI-FGSM, L-inf 24/255, SSIM >= 0.55, EOT over the attacker's clean-ups.
``check_every = steps``: no early stop, every CAPTCHA gets all steps (margin for transfer
to OCR models the attack never saw). Input diversity (DI: with probability ``diversity``
a step's batch is resized by up to ``resize_rate``, padded and resized back) is a transfer
booster; TI gradient smoothing was tried and left off (its figures, and DI's, are in
"Input diversity and TI smoothing" in ``docs/captcha.md``)."""

ENSEMBLE = ("cnn", "crnn", "crnn_adv")
"""Models the attack pulls; ``lstm`` is held out for evaluation."""


def describe(spec: AttackSpec = ROBUST_SPEC, routed: bool = False) -> str:
    """What ran, in one line (for reports)."""
    mode = "routed (one model per EOT copy)" if routed else "full"
    return (f"{spec.describe()}, eps {spec.eps * 255:.0f}/255, {spec.steps} steps of "
            f"{spec.alpha * 255:g}/255, {spec.eot_samples} EOT samples, {mode} ensemble "
            f"{', '.join(ENSEMBLE)}")  # fmt: skip


def wrong_text(text: str, alphabet: str, rng: random.Random) -> str:
    """A text of the same length whose every character differs from ``text``'s."""
    if len(set(alphabet)) < 2:
        raise ValueError("the alphabet needs two characters to pick a wrong one")
    return "".join(rng.choice([c for c in alphabet if c != ch]) for ch in text)


@dataclass
class RobustBatch:
    """What :func:`make_robust` returns: the robust images and how the attack went."""

    images: Tensor
    """``[B, 3, H, W]`` in [0, 1] (8-bit levels)."""
    decoys: list[str]
    """The wrong text each CAPTCHA was pulled toward."""
    result: AttackResult


def multi_target_objective(
    models: Sequence[nn.Module], spec: AttackSpec = ROBUST_SPEC, routed: bool = False
) -> Expectation:
    """Targeted CTC toward ``ctx["decoy"]``, averaged over EOT samples; each sample read by
    one model (``routed``) or by every model."""
    members = [(ModelObjective(m, [(CTC("decoy", "decoy_lengths", targeted=True), 1.0)]), 1.0)
               for m in models]  # fmt: skip
    ensemble = RoutedEnsemble(members) if routed else Ensemble(members)
    return Expectation(ensemble, make_eot(spec))


def make_robust(
    images: Tensor,
    texts: Sequence[str],
    models: Sequence[nn.Module],
    spec: AttackSpec = ROBUST_SPEC,
    seed: int | None = None,
    alphabet: str = ALPHABET,
    routed: bool = False,
) -> RobustBatch:
    """Robust versions of base CAPTCHAs ``images`` ``[B, 3, H, W]`` showing ``texts``.

    ``seed`` fixes the decoys and the EOT draws (None: fresh randomness, as when serving).
    The CAPTCHAs of a batch are attacked together (cost per CAPTCHA falls with the batch
    size; each keeps its own decoy, momentum and SSIM scale).
    """
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    decoys = [wrong_text(t, alphabet, rng) for t in texts]
    targets, lengths = ctc_targets(decoys)
    ctx = TransformContext.of_batch(len(images), decoy=targets, decoy_lengths=lengths)
    gen = torch.Generator().manual_seed(rng.getrandbits(62))
    result = build_attack(spec).run(
        images, multi_target_objective(models, spec, routed), ctx, generator=gen
    )
    robust = (images + result.delta).clamp(0.0, 1.0)
    robust = torch.round(robust * 255.0) / 255.0
    return RobustBatch(robust, decoys, result)
