"""Each named attack of the engine lowers a real recognizer's similarity on a real face crop."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch

from facecloak.images import decode_image
from facecloak.settings import Settings
from models.alignment import align
from models.registry import ModelStore
from workers.engine import (
    AttackSpec,
    CosineDodging,
    ModelObjective,
    TransformContext,
    build_attack,
    difgsm,
    dimifgsm,
    fgsm,
    ifgsm,
    mifgsm,
    ti_dimifgsm,
)
from workers.jobs.runtime import Runtime

from .helpers import faces_dir, runtime_for


@pytest.fixture(scope="module")
def runtime(settings: Settings, model_store: ModelStore) -> Runtime:
    return runtime_for(settings, model_store)


@pytest.fixture(scope="module")
def crop(runtime: Runtime) -> torch.Tensor:
    test = faces_dir("test")
    ids = json.loads((test / "identities.json").read_text())
    rgb = decode_image((test / ids["obama"][0]).read_bytes()).rgb
    face = max(runtime.detect(rgb), key=lambda f: f.width)
    c = align(rgb, face.landmarks, 112)
    return torch.from_numpy(c).permute(2, 0, 1).float().div(255).unsqueeze(0)


ATTACKS: dict[str, Callable[[float], AttackSpec]] = {
    "fgsm": lambda eps: fgsm(eps),
    "ifgsm": lambda eps: ifgsm(eps, steps=5),
    "mifgsm": lambda eps: mifgsm(eps, steps=5),
    "difgsm": lambda eps: difgsm(eps, steps=5),
    "dimifgsm": lambda eps: dimifgsm(eps, steps=5),
    "ti_dimifgsm": lambda eps: ti_dimifgsm(eps, steps=5),
}


BOUND = {"fgsm": 0.8, "ti_dimifgsm": 0.75}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_lowers_similarity_on_a_real_face(
    name: str, crop: torch.Tensor, runtime: Runtime
) -> None:
    rec = runtime.recognizer("w600k_mbf")
    with torch.no_grad():
        clean = rec(crop)
    ctx = TransformContext.of_batch(1, clean=clean)
    objective = ModelObjective(rec, [(CosineDodging("clean"), 1.0)])
    eps = 8 / 255
    attack = build_attack(ATTACKS[name](eps))
    result = attack.run(crop, objective, ctx, generator=torch.Generator().manual_seed(1))
    assert result.delta.abs().max() <= eps + 1e-6
    with torch.no_grad():
        sim = float((rec(crop + result.delta) * clean).sum())
    # one FGSM step already costs a real face a lot of similarity; iterative ones more
    # (TI trades white-box strength for transfer: its smoothed steps bite less)
    assert sim < BOUND.get(name, 0.5), sim
