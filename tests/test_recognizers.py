"""Recognizers on real photos: same person above threshold, different people below."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facecloak.images import decode_image
from models.alignment import align, estimate_similarity, template, warp_crop
from workers.engine.warp import warp_affine
from workers.jobs import runtime
from workers.jobs.analysis import embed

from .helpers import TEST

IDS = json.loads((TEST / "identities.json").read_text())


def _main_face(name: str) -> tuple[np.ndarray, object]:
    rgb = decode_image((TEST / name).read_bytes()).rgb
    faces = runtime.detector().detect(rgb)
    return rgb, max(faces, key=lambda f: f.width * f.height)


@pytest.mark.parametrize("model", ["w600k_mbf", "sface", "facenet"])
def test_same_person_matches_and_others_do_not(model: str) -> None:
    a = _main_face(IDS["obama"][0])
    b = _main_face(IDS["obama"][1])
    c = _main_face(IDS["biden"][0])
    e = [embed(rgb, [f], model)[0] for rgb, f in (a, b, c)]
    thr = runtime.threshold(model)
    assert float(e[0] @ e[1]) > thr
    assert float(e[0] @ e[2]) < thr


def test_differentiable_warp_matches_numpy_alignment() -> None:
    rgb, face = _main_face(IDS["obama"][0])
    m = estimate_similarity(face.landmarks.astype(np.float64), template(112))
    ref = warp_crop(rgb, m, 112).astype(np.float32)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().unsqueeze(0)
    out = warp_affine(x, torch.tensor(m, dtype=torch.float32).unsqueeze(0), 112)
    got = out[0].permute(1, 2, 0).numpy()
    assert np.abs(got - ref)[4:-4, 4:-4].mean() < 1.0  # same crop up to rounding
    assert np.abs(align(rgb, face.landmarks, 112) - ref).max() <= 1
