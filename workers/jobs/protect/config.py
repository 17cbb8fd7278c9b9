"""The protect job's attack, as data: the engine spec of each preset plus the face-only knobs.

Every number the protect attack uses lives here (EOT probabilities included), so the job,
the tests and the report read the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from facecloak.contract.options import ProtectOptions
from workers.engine import AttackSpec, EotStep

ALPHA_RATIO = 0.15
"""Step size as a fraction of eps."""
EOT_SAMPLES = 2
"""Copies of each face per iteration; the first stays untransformed."""
MARGIN = 0.5
"""A face stops once every surrogate is below its threshold minus this, on every sample."""
DIVERSITY = 0.7
"""Input-diversity probability on each aligned crop."""
EOT_MAKEUP = EotStep("makeup", 0.5)
EOT_RESCALE = EotStep("rescale", 0.5, {"scale": (0.5, 1.0)})
EOT_JPEG = EotStep("jpeg", 0.6, {"quality": (50, 95)})


@dataclass(frozen=True)
class CloakConfig:
    """The engine spec plus what only the face job has (alignment jitter, face mask, decoy)."""

    spec: AttackSpec
    jitter_scale: float = 0.05
    jitter_shift: float = 3.0
    jitter_degrees: float = 4.0
    face_mask: float = 1.1
    """>0: perturb only a soft ellipse this many eye distances wide."""
    decoy: bool = False
    decoy_weight: float = 0.5
    weights: Mapping[str, float] = field(default_factory=dict)
    """Surrogate weights of the ensemble (1 when absent)."""

    @property
    def makeup(self) -> bool:
        """Whether makeup is one of the EOT transforms (then faces need 106 landmarks)."""
        return any(step.transform == "makeup" for step in self.spec.eot)

    def with_overrides(self, overrides: Mapping[str, Any]) -> CloakConfig:
        """A copy with fields of this config or of its spec changed (bench tuning)."""
        own = {f.name for f in fields(self)}
        spec_changes = {k: v for k, v in overrides.items() if k not in own}
        mine = {k: v for k, v in overrides.items() if k in own}
        return replace(self, spec=self.spec.with_(**spec_changes), **mine)


def attack_spec(options: ProtectOptions) -> AttackSpec:
    """The engine spec of the options' preset and overrides: DI-MI-FGSM, L-inf, EOT."""
    eps, steps = options.budget()
    flags = (
        (options.eot_makeup, EOT_MAKEUP),
        (options.eot_rescale, EOT_RESCALE),
        (options.eot_jpeg, EOT_JPEG),
    )
    return AttackSpec(
        eps=eps,
        steps=steps,
        step_size=eps * ALPHA_RATIO,
        budget="linf",
        optimizer="momentum",
        momentum=1.0,
        diversity=DIVERSITY,
        eot=tuple(step for on, step in flags if on),
        eot_samples=EOT_SAMPLES,
        eot_keep_first_clean=True,
        early_stop_margin=MARGIN,
        quantise=True,
    )


def cloak_config(options: ProtectOptions) -> CloakConfig:
    """Attack settings for the chosen preset and overrides."""
    return CloakConfig(spec=attack_spec(options), decoy=options.decoy)
