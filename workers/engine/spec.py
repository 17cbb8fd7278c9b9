"""The attack as data: :class:`AttackSpec`, the named presets, and how a spec is built.

A job, its tests and its report all read the same spec: budget kind and eps, optimiser,
step size, steps, input diversity, TI smoothing, the EOT list with probabilities, the
early-stop margin and 8-bit quantisation in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from workers.engine.attack import IterativeAttack, Penalty
from workers.engine.budget import Budget, L2Budget, LinfBudget, SharedBudget, TriggerBudget
from workers.engine.diversity import InputDiversity
from workers.engine.filters import GaussianBlur, MedianSmooth, Quantise8bit
from workers.engine.flip import FLIP_PPD, FlipLoss
from workers.engine.jpeg import DifferentiableJpeg
from workers.engine.penalties import PenaltySum
from workers.engine.perceptual import PerceptualBudget
from workers.engine.rescale import RandomRescale
from workers.engine.smoothing import GradientSmoothing
from workers.engine.ssim import SsimFloor, SsimLoss
from workers.engine.threshold import Binarise, Grayscale
from workers.engine.transforms import EOT, Compose, RandomApply, Transform
from workers.engine.update import AdamUpdate, MomentumUpdate, RmsUpdate, SignUpdate, UpdateRule

BudgetKind = Literal["linf", "l2", "trigger", "perceptual"]
OptimizerKind = Literal["sign", "momentum", "adam", "rms"]
TransformFactory = Callable[..., Transform]


def _jpeg(quality: tuple[int, int] = (50, 95)) -> Transform:
    return DifferentiableJpeg((int(quality[0]), int(quality[1])))


def _rescale(scale: tuple[float, float] = (0.5, 1.0)) -> Transform:
    return RandomRescale(*scale)


TRANSFORMS: dict[str, TransformFactory] = {
    "jpeg": _jpeg,
    "rescale": _rescale,
    "blur": GaussianBlur,
    "median": MedianSmooth,
    "quantise": Quantise8bit,
    "diversity": InputDiversity,
    "grayscale": Grayscale,
    "binarise": Binarise,
}
"""Engine transforms an EOT step may name; jobs add their own (e.g. ``makeup``)."""


@dataclass(frozen=True)
class EotStep:
    """One EOT transform: a name from the transform factories, applied per sample with
    ``probability``; ``params`` are the factory's keyword arguments.
    """

    transform: str
    probability: float
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackSpec:
    """Everything that defines an attack run (but not its objective)."""

    eps: float
    steps: int = 10
    step_size: float | None = None
    """Absolute step; None: ``2.5 * eps / steps`` (2/255 for eps 8/255 and 10 steps)."""
    budget: BudgetKind = "linf"
    """``perceptual``: ``eps`` bounds luma, ``eps_chroma`` chroma, both scaled by a
    visibility mask clipped to ``mask_gain`` (:class:`PerceptualBudget`)."""
    eps_chroma: float = 0.0
    mask_gain: tuple[float, float] = (0.5, 3.0)
    optimizer: OptimizerKind = "sign"
    momentum: float = 1.0
    diversity: float = 0.0
    """Input-diversity probability (DI); 0 turns it off."""
    resize_rate: float = 1.1
    ti_kernel: int = 0
    """TI gradient smoothing kernel size; 0 turns it off."""
    ti_sigma: float = 3.0
    eot: tuple[EotStep, ...] = ()
    eot_samples: int = 1
    eot_keep_first_clean: bool = True
    early_stop_margin: float = 0.0
    quantise: bool = False
    random_start: bool = False
    check_every: int = 1
    trigger_l1: float = 1e-3
    ssim_floor: float | None = None
    """Additive budgets: also keep SSIM (luma) to the clean image at or above this
    (:class:`SsimFloor`); None: no floor."""
    shrink: float | None = None
    """Shrink mode of the loop: a done sample's delta is multiplied by this and attacked on
    (see :class:`IterativeAttack`); None: done samples are frozen."""
    flip_weight: float = 0.0
    """Additive budgets: add this times the change's mean FLIP (over the mask, at
    ``flip_ppd``; :class:`FlipLoss`) to the loss; 0: no visibility penalty."""
    flip_ppd: float = FLIP_PPD
    flip_max_side: int | None = None
    """FLIP penalty on images larger than this (pixels, longer side): averaged down by an
    integer factor ``k`` and compared at ``flip_ppd / k`` (:class:`FlipLoss`); None: at
    full resolution."""
    ssim_weight: float = 0.0
    """Additive budgets: add this times the change's mean structural dissimilarity
    ``1 - SSIM`` (luma, over the mask; :class:`SsimLoss`) to the loss; 0: none."""

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        return 2.5 * self.eps / self.steps if self.step_size is None else self.step_size

    @property
    def name(self) -> str:
        """The attack's usual name: FGSM, I-FGSM, PGD, MI-FGSM, DI-MI-FGSM, TI-DI-MI-FGSM, Adam."""
        if self.optimizer == "adam":
            return "Adam"
        if self.optimizer == "rms":
            return "-".join(["TI"] * bool(self.ti_kernel) + ["DI"] * bool(self.diversity) + ["RMS"])
        parts = ["TI"] * bool(self.ti_kernel) + ["DI"] * bool(self.diversity)
        parts += ["MI"] * (self.optimizer == "momentum")
        if parts:
            return "-".join([*parts, "FGSM"])
        if self.steps == 1:
            return "FGSM"
        return "PGD" if self.random_start else "I-FGSM"

    def describe(self) -> str:
        """A one-line summary, e.g. ``DI-MI-FGSM (L-inf) + EOT(makeup, rescale, jpeg)``."""
        budget = {"linf": "L-inf", "l2": "L2", "trigger": "trigger", "perceptual": "luma/chroma"}[
            self.budget
        ]
        text = f"{self.name} ({budget})"
        if self.eot and self.eot_samples > 1:
            text += f" + EOT({', '.join(step.transform for step in self.eot)})"
        if self.ssim_floor is not None:
            text += f", SSIM >= {self.ssim_floor:g}"
        if self.flip_weight > 0:
            text += f", FLIP penalty x{self.flip_weight:g}"
        if self.ssim_weight > 0:
            text += f", 1-SSIM penalty x{self.ssim_weight:g}"
        return text + (" with 8-bit rounding" if self.quantise else "")

    def with_(self, **changes: Any) -> AttackSpec:
        """A copy with fields changed."""
        return replace(self, **changes)


def make_budget(spec: AttackSpec) -> Budget | SharedBudget:
    """The spec's budget (with its SSIM floor, if any)."""
    if spec.ssim_floor is not None and spec.budget != "trigger":
        inner = make_budget(spec.with_(ssim_floor=None))
        assert not isinstance(inner, SharedBudget)
        return SsimFloor(inner, spec.ssim_floor)
    if spec.budget == "linf":
        return LinfBudget(spec.eps)
    if spec.budget == "l2":
        return L2Budget(spec.eps)
    if spec.budget == "perceptual":
        return PerceptualBudget(spec.eps, spec.eps_chroma, gain=spec.mask_gain)
    return TriggerBudget(spec.trigger_l1)


def make_update(spec: AttackSpec) -> UpdateRule:
    """The spec's optimiser."""
    if spec.optimizer == "momentum":
        return MomentumUpdate(spec.momentum)
    if spec.optimizer == "adam":
        return AdamUpdate()
    if spec.optimizer == "rms":
        return RmsUpdate(spec.momentum)
    return SignUpdate()


def make_diversity(spec: AttackSpec) -> InputDiversity | None:
    """DI input diversity, or None."""
    return InputDiversity(spec.diversity, spec.resize_rate) if spec.diversity > 0 else None


def make_smoothing(spec: AttackSpec) -> GradientSmoothing | None:
    """TI gradient smoothing, or None."""
    return GradientSmoothing(spec.ti_kernel, spec.ti_sigma) if spec.ti_kernel else None


def make_eot(spec: AttackSpec, factories: Mapping[str, TransformFactory] | None = None) -> EOT:
    """The EOT of the spec: each step as ``RandomApply(factory(**params), probability)``.

    ``factories`` extend (or override) :data:`TRANSFORMS` with a job's own transforms.
    """
    known = {**TRANSFORMS, **(factories or {})}
    steps: list[Transform] = []
    for step in spec.eot:
        if step.transform not in known:
            raise KeyError(f"unknown EOT transform {step.transform!r}; known: {sorted(known)}")
        steps.append(RandomApply(known[step.transform](**step.params), step.probability))
    return EOT(Compose(steps), spec.eot_samples, spec.eot_keep_first_clean)


def build_attack(
    spec: AttackSpec, preprocess: Sequence[Transform] = (), diversity_at_input: bool = True
) -> IterativeAttack:
    """The attack loop of ``spec``. Between the attacked image and the objective sit, in
    order: 8-bit quantisation (``spec.quantise``), the job's ``preprocess`` transforms and
    DI (unless the job applies it elsewhere: ``diversity_at_input=False``).
    """
    pre: list[Transform] = [Quantise8bit()] if spec.quantise else []
    pre.extend(preprocess)
    diversity = make_diversity(spec)
    if diversity is not None and diversity_at_input:
        pre.append(diversity)
    return IterativeAttack(
        budget=make_budget(spec),
        update=make_update(spec),
        step_size=spec.alpha,
        steps=spec.steps,
        input_transform=Compose(pre) if pre else None,
        smoothing=make_smoothing(spec),
        random_start=spec.random_start,
        check_every=spec.check_every,
        shrink=spec.shrink,
        penalty=make_penalty(spec),
    )


def make_penalty(spec: AttackSpec) -> Penalty | None:
    """The spec's visibility penalty: FLIP and/or ``1 - SSIM``, weighted; None: neither."""
    terms: list[tuple[Penalty, float]] = []
    if spec.flip_weight > 0:
        terms.append((FlipLoss(spec.flip_ppd, spec.flip_max_side), spec.flip_weight))
    if spec.ssim_weight > 0:
        terms.append((SsimLoss(), spec.ssim_weight))
    return PenaltySum(terms) if terms else None


# --- the named attacks as presets of the spec ------------------------------------------------


def fgsm(eps: float) -> AttackSpec:
    """FGSM: one signed-gradient step of size ``eps``."""
    return AttackSpec(eps=eps, steps=1, step_size=eps)


def ifgsm(eps: float, steps: int = 10, **kw: Any) -> AttackSpec:
    """I-FGSM (BIM; PGD with ``random_start=True``)."""
    return AttackSpec(eps=eps, steps=steps, **kw)


def mifgsm(eps: float, steps: int = 10, **kw: Any) -> AttackSpec:
    """MI-FGSM: I-FGSM with gradient momentum."""
    return AttackSpec(eps=eps, steps=steps, optimizer="momentum", **kw)


def difgsm(eps: float, steps: int = 10, **kw: Any) -> AttackSpec:
    """DI-FGSM: I-FGSM on randomly resized and padded inputs (probability 0.7)."""
    return AttackSpec(eps=eps, steps=steps, **{"diversity": 0.7, **kw})


def dimifgsm(eps: float, steps: int = 10, **kw: Any) -> AttackSpec:
    """DI-MI-FGSM (M-DI2-FGSM): input diversity plus momentum."""
    return AttackSpec(eps=eps, steps=steps, optimizer="momentum", **{"diversity": 0.7, **kw})


def ti_dimifgsm(eps: float, steps: int = 10, **kw: Any) -> AttackSpec:
    """TI-DI-MI-FGSM: input diversity, momentum and Gaussian gradient smoothing (7, 3)."""
    return AttackSpec(
        eps=eps, steps=steps, optimizer="momentum", **{"diversity": 0.7, "ti_kernel": 7, **kw}
    )


PRESETS: dict[str, Callable[..., AttackSpec]] = {
    "fgsm": fgsm,
    "ifgsm": ifgsm,
    "mifgsm": mifgsm,
    "difgsm": difgsm,
    "dimifgsm": dimifgsm,
    "ti_dimifgsm": ti_dimifgsm,
}
