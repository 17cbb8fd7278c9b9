"""The report's ``attack`` block, generated from the attack spec the job ran."""

from __future__ import annotations

from typing import Any

from facecloak.contract.reports import AttackSummary, EotEntry, SearchSummary
from workers.engine import EotStep
from workers.jobs.protect.config import CloakConfig


def _params(step: EotStep) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in step.params.items()}


def attack_summary(config: CloakConfig, seed: int, surrogates: list[str]) -> AttackSummary:
    """What the report says about the attack: every field read from ``config.spec``."""
    spec = config.spec
    return AttackSummary(
        method=f"{spec.describe()} on the full-resolution photo",
        budget=spec.budget,
        eps_255=round(spec.eps * 255, 3),
        alpha_255=round(spec.alpha * 255, 3),
        max_steps=spec.steps,
        optimizer={
            "sign": "sign",
            "momentum": "momentum_sign",
            "adam": "adam",
            "rms": "rms_momentum",
        }[spec.optimizer],
        diversity=spec.diversity > 0,
        translation_invariance=spec.ti_kernel > 0,
        eot_samples=spec.eot_samples,
        eot=[
            EotEntry(transform=s.transform, probability=s.probability, params=_params(s))
            for s in spec.eot
        ],
        margin=spec.early_stop_margin,
        quantise_8bit=spec.quantise,
        seed=seed,
        surrogates=surrogates,
        search=_search(config),
    )


def _search(config: CloakConfig) -> SearchSummary | None:
    plan = config.search
    if plan is None:
        return None
    return SearchSummary(
        levels_255=[round(e, 3) for e, _ in plan.levels],
        steps_per_level=[n for _, n in plan.levels],
        eps_chroma_255=plan.eps_chroma,
        mask_gain=list(plan.mask_gain),
        refine_steps=plan.refine_steps,
        shrink=plan.shrink,
        visibility_cap=plan.cap,
    )
