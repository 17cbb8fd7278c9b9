"""Recognizers on real photos: same person above threshold, different people below."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facecloak.images import decode_image
from facecloak.settings import Settings
from models.alignment import align, estimate_similarity, template, warp_crop
from models.detection import Face
from models.recognizers import Recognizer, load_recognizer
from models.registry import ModelStore
from workers.jobs.analysis import embed
from workers.jobs.protect.warp import warp_affine
from workers.jobs.runtime import Runtime

from .helpers import TEST, runtime_for, shared_photo

IDS = json.loads(shared_photo("test", "identities.json").read_text())


@pytest.fixture(scope="module")
def runtime(settings: Settings, model_store: ModelStore) -> Runtime:
    return runtime_for(settings, model_store)


def _main_face(runtime: Runtime, name: str) -> tuple[np.ndarray, Face]:
    rgb = decode_image((TEST / name).read_bytes()).rgb
    faces = runtime.detector().detect(rgb)
    return rgb, max(faces, key=lambda f: f.width * f.height)


@pytest.mark.parametrize("model", ["w600k_mbf", "sface", "facenet", "dlib_resnet"])
def test_same_person_matches_and_others_do_not(runtime: Runtime, model: str) -> None:
    a = _main_face(runtime, IDS["obama"][0])
    b = _main_face(runtime, IDS["obama"][1])
    c = _main_face(runtime, IDS["biden"][0])
    e = [embed(runtime, rgb, [f], model)[0] for rgb, f in (a, b, c)]
    thr = runtime.threshold(model)
    assert float(e[0] @ e[1]) > thr
    assert float(e[0] @ e[2]) < thr


def test_differentiable_warp_matches_numpy_alignment(runtime: Runtime) -> None:
    rgb, face = _main_face(runtime, IDS["obama"][0])
    m = estimate_similarity(face.landmarks.astype(np.float64), template(112))
    ref = warp_crop(rgb, m, 112).astype(np.float32)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().unsqueeze(0)
    out = warp_affine(x, torch.tensor(m, dtype=torch.float32).unsqueeze(0), 112)
    got = out[0].permute(1, 2, 0).numpy()
    assert np.abs(got - ref)[4:-4, 4:-4].mean() < 1.0  # same crop up to rounding
    assert np.abs(align(rgb, face.landmarks, 112) - ref).max() <= 1


def test_load_recognizer_takes_the_store(model_store: ModelStore) -> None:
    rec = load_recognizer("sface", model_store)
    assert isinstance(rec, Recognizer) and rec.name == "sface"
    assert load_recognizer("sface", model_store) is rec  # loaded once per store
    x = torch.rand(2, 3, rec.input_size, rec.input_size, requires_grad=True)
    emb = rec(x)
    assert emb.shape == (2, rec.spec.embedding_size)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    emb[0].sum().backward()
    assert x.grad is not None and x.grad[0].abs().sum() > 0 and x.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="not a recognizer"):
        load_recognizer("yunet", model_store)
