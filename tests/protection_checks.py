"""Checks that a photo a job returned is really protected, not merely re-encoded.

Two independent sources: the job's report (:func:`assert_report_protects`: each recognizer
of the verification no longer matches the face, visibility figures present and sane) and
the returned bytes themselves (:func:`assert_face_changed`: the change sits on the face;
:func:`assert_not_recognised`: the test process's own recognizer no longer matches it,
while it still matches a plain re-save of the original).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facecloak.contract.options import ProtectOptions
from facecloak.contract.reports import ProtectReport, Verification
from facecloak.images import decode_image

if TYPE_CHECKING:
    from models.detection import Face
    from workers.jobs.runtime import Runtime

SURROGATES: list[str] = ProtectOptions().surrogates
"""The recognizers a protect job attacks by default."""
HELD_OUT = ["facenet"]
"""A recognizer the job does not attack; the tests ask for it as ``eval_models``."""


@dataclass(frozen=True)
class FaceChange:
    """The original's face and the mean absolute pixel change on and off its box."""

    face: Face
    before: np.ndarray
    after: np.ndarray
    on_face: float
    off_face: float


def assert_face_changed(runtime: Runtime, original: bytes, protected: bytes) -> FaceChange:
    """The one face of ``original`` is still found in ``protected``, clearly changed, and the
    change is mostly on the face (a re-encode alone changes the whole photo a little)."""
    before, after = decode_image(original).rgb, decode_image(protected).rgb
    assert before.shape == after.shape
    (face,) = runtime.detect(before)
    assert len(runtime.detect(after)) == 1  # the face is still there
    x0, y0, x1, y1 = (int(v) for v in face.box)
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16))
    on_face = np.zeros(diff.shape[:2], dtype=bool)
    on_face[max(0, y0) : y1, max(0, x0) : x1] = True
    on, off = float(diff[on_face].mean()), float(diff[~on_face].mean())
    assert on > 1.0, f"the face was barely changed: mean |diff| {on:.3f}"
    assert on > 5 * off, f"the change is not on the face: {on:.3f} on it, {off:.3f} off it"
    return FaceChange(face, before, after, on, off)


def assert_not_recognised(
    runtime: Runtime, change: FaceChange, models: list[str]
) -> dict[str, float]:
    """Each recognizer of ``models`` (the test process's own) matches the original face to a
    JPEG q75 re-save of the original, but not to the protected face. Returns the similarities.
    """
    from workers.jobs import conditions
    from workers.jobs.analysis import embed, match_faces

    sims: dict[str, float] = {}
    resaved = conditions.jpeg(change.before, 75)
    for model in models:
        threshold = runtime.threshold(model)
        ref = embed(runtime, change.before, [change.face], model)[0]
        for label, rgb in (("re-saved original", resaved), ("protected", change.after)):
            (found,) = match_faces([change.face], runtime.detect(rgb))
            assert found is not None, f"{model}: no face in the {label} photo"
            sim = float(embed(runtime, rgb, [found], model)[0] @ ref)
            if label == "protected":
                assert sim < threshold, f"{model} still matches the protected face: {sim:.3f}"
                sims[model] = sim
            else:  # the control: without protection the recognizer does match
                assert sim >= threshold, f"{model} misses the {label} face: {sim:.3f}"
    return sims


def assert_report_protects(
    report: dict[str, Any],
    surrogates: list[str],
    held_out: list[str],
    size: tuple[int, int],
) -> Verification:
    """The item report says, per recognizer and face, that the protected photo is no longer
    matched to the original (surrogates and the held-out ``held_out`` models alike), and
    gives sane face-region visibility figures. ``size`` is the photo's (width, height).
    """
    rep = ProtectReport.model_validate(report)  # the documented schema, strictly
    assert rep.status == "protected" and rep.error is None, rep.error
    assert rep.metadata_stripped is True
    assert rep.attack is not None and rep.attack.surrogates == surrogates
    assert rep.models is not None
    roles = {m: u.role for m, u in rep.models.items()}
    want = {**{m: "surrogate" for m in surrogates}, **{m: "evaluation" for m in held_out}}
    assert roles == want, roles
    assert rep.faces and all(f.steps >= 1 for f in rep.faces), rep.faces
    table = rep.verification
    assert table is not None, "the job ran without verification"
    assert len(table.faces) == len(rep.faces)
    assert "saved" in table.conditions
    for model in [*surrogates, *held_out]:
        assert table.matched_faces[model]["saved"] == 0, (model, table.matched_faces)
        assert table.thresholds[model] is not None
        for face in table.faces:
            assert set(face.models[model]) == set(table.conditions)
            check = face.models[model]["saved"]
            # the recognizer knows the original face, finds the protected one, and misses it
            assert check.clean_similarity is not None
            assert check.clean_similarity >= check.threshold, (model, check)
            assert check.detected and check.protected_similarity is not None, (model, check)
            assert check.protected_similarity < check.threshold, (model, check)
            assert not check.matched, (model, check)
    width, height = size
    for face in table.faces:
        vis = face.visibility
        x0, y0, x1, y1 = vis.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, vis.box
        assert 0 < vis.flip < 0.5, vis  # changed, yet far from noise
        assert 0.5 < vis.ssim < 1.0, vis
        assert vis.psnr is not None and 20.0 < vis.psnr < 60.0, vis
        assert 1 <= vis.jpeg_equivalent <= 100
        assert face.psnr == vis.psnr and face.ssim == vis.ssim
    assert table.psnr is not None and table.psnr > 20.0 and 0.5 < table.ssim < 1.0
    return table
