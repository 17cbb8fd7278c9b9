"""Each attack of the engine lowers a real recognizer's similarity on a real face crop."""

from __future__ import annotations

import json

import pytest
import torch

from facecloak.images import decode_image
from models.alignment import align
from workers.engine import Objective, difgsm, dimifgsm, fgsm, ifgsm, mifgsm, ti_dimifgsm
from workers.jobs import runtime

from .helpers import TEST

IDS = json.loads((TEST / "identities.json").read_text())


@pytest.fixture(scope="module")
def crop() -> torch.Tensor:
    rgb = decode_image((TEST / IDS["obama"][0]).read_bytes()).rgb
    face = max(runtime.detector().detect(rgb), key=lambda f: f.width)
    c = align(rgb, face.landmarks, 112)
    return torch.from_numpy(c).permute(2, 0, 1).float().div(255).unsqueeze(0)


ATTACKS = {
    "fgsm": lambda eps: fgsm(eps),
    "ifgsm": lambda eps: ifgsm(eps, steps=5),
    "mifgsm": lambda eps: mifgsm(eps, steps=5),
    "difgsm": lambda eps: difgsm(eps, steps=5),
    "dimifgsm": lambda eps: dimifgsm(eps, steps=5),
    "ti_dimifgsm": lambda eps: ti_dimifgsm(eps, steps=5),
}


BOUND = {"fgsm": 0.8, "ti_dimifgsm": 0.75}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_lowers_similarity_on_a_real_face(name: str, crop: torch.Tensor) -> None:
    runtime.device()  # flush denormals, threads
    rec = runtime.recognizer("w600k_mbf")
    with torch.no_grad():
        clean = rec(crop)

    def objective(x: torch.Tensor, idx: torch.Tensor) -> Objective:
        sim = (rec(x) * clean[idx]).sum(1)
        return Objective(loss=sim, done=torch.zeros_like(sim, dtype=torch.bool))

    eps = 8 / 255
    result = ATTACKS[name](eps).run(crop, objective, generator=torch.Generator().manual_seed(1))
    assert result.delta.abs().max() <= eps + 1e-6
    with torch.no_grad():
        sim = float((rec(crop + result.delta) * clean).sum())
    # one FGSM step already costs a real face a lot of similarity; iterative ones more
    # (TI trades white-box strength for transfer: its smoothed steps bite less)
    assert sim < BOUND.get(name, 0.5), sim
