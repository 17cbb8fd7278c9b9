"""The visibility presets on a real dev face: protection, visibility, progress, cancellation."""

from __future__ import annotations

import numpy as np
import pytest

from facecloak.contract.options import ProtectOptions
from facecloak.images import decode_image
from facecloak.settings import Settings
from models.registry import ModelStore
from workers.jobs.analysis import find_faces
from workers.jobs.protect import protect_photo
from workers.jobs.protect.job import build_cloaker, face_inputs
from workers.jobs.runtime import Runtime

from .helpers import DEV, runtime_for

FACE = DEV / "img11.jpg"


class Canceled(Exception):
    pass


@pytest.fixture(scope="module")
def runtime(settings: Settings, model_store: ModelStore) -> Runtime:
    if not DEV.is_dir():
        pytest.skip(f"shared face photos not found at {DEV}")
    return runtime_for(settings, model_store)


def test_a_raising_progress_callback_stops_the_attack(runtime: Runtime) -> None:
    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if len(calls) >= 2:
            raise Canceled

    options = ProtectOptions(eot_makeup=False)
    with pytest.raises(Canceled):
        protect_photo(FACE.read_bytes(), "f.jpg", options, runtime, progress)
    assert len(calls) == 2 and calls[-1][0] <= 2 and calls[-1][1] > 60  # attack-step units


def test_balanced_protects_and_is_less_visible_than_legacy_medium(runtime: Runtime) -> None:
    flips = {}
    for strength in ("medium", "balanced"):
        options = ProtectOptions(strength=strength, steps=30, eot_makeup=False)
        out = protect_photo(FACE.read_bytes(), "f.jpg", options, runtime)
        table = out.report["verification"]  # measured on the saved photo, written or not
        assert table["matched_faces"]["w600k_mbf"]["saved"] == 0
        assert table["matched_faces"]["sface"]["saved"] == 0
        vis = table["faces"][0]["visibility"]
        flips[strength] = vis["flip"]
        if strength == "balanced":  # the report and the outcome agree on the cap
            assert vis["visibility_cap"] == 75
            assert (out.output is not None) == vis["within_cap"]
            if not vis["within_cap"]:
                assert out.report["next_preset"] == "strong"
                assert out.report["error"]["code"] == "visibility_cap_exceeded"
    assert flips["balanced"] < flips["medium"]


def test_a_colour_face_gets_a_grey_change(runtime: Runtime) -> None:
    rgb = decode_image(FACE.read_bytes()).rgb
    options = ProtectOptions(steps=6, eot_makeup=False)
    cloaker = build_cloaker(options, runtime)
    found = find_faces(runtime, rgb, runtime.min_face_size).faces
    faces = face_inputs(runtime, rgb, found, cloaker.cfg.makeup)
    out = cloaker.protect(rgb, faces).rgb.astype(int) - rgb.astype(int)
    changed = np.abs(out).sum(2) > 0
    assert changed.sum() > 1000  # the face did change
    grey = (out[..., 0] == out[..., 1]) & (out[..., 1] == out[..., 2])
    assert grey[changed].mean() > 0.99  # the same 8-bit offset on R, G and B (bar clipping)
