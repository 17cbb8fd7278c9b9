"""End to end: the protect job on real photos, checked independently of its own report.

The job is called directly (``protect_photo`` with a ``Runtime``), written out the way
``facecloak protect`` does; the CLI's own commands are run as subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecloak.contract.options import ProtectOptions
from facecloak.images import decode_image
from facecloak.settings import Settings
from models.registry import ModelStore
from workers.jobs.analysis import embed, match_faces
from workers.jobs.preview import write_preview
from workers.jobs.protect import protect_photo
from workers.jobs.runtime import Runtime
from workers.jobs.verify import format_table, verify_pair

from .helpers import DEV, faces_dir, runtime_for

SURROGATES = ["w600k_mbf", "sface"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "facecloak.cli", *args], capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def runtime(settings: Settings, model_store: ModelStore) -> Runtime:
    return runtime_for(settings, model_store)


@pytest.fixture(scope="module")
def protected_multi_face(tmp_path_factory: pytest.TempPathFactory, runtime: Runtime) -> Path:
    out = tmp_path_factory.mktemp("out")
    data = (faces_dir("dev") / "img59.jpg").read_bytes()
    outcome = protect_photo(data, "img59.jpg", ProtectOptions(strength="medium", steps=40), runtime)
    assert outcome.status == "protected" and outcome.faces == 2, outcome.report.get("error")
    assert outcome.output is not None
    (out / "img59.jpg").write_bytes(outcome.output)
    (out / "img59.jpg.json").write_text(json.dumps(outcome.report, indent=2))
    write_preview(data, outcome.output, out / "img59.jpg.preview.png", runtime.max_pixels)
    return out


def test_output_is_no_longer_matched_by_the_surrogates(
    protected_multi_face: Path, runtime: Runtime
) -> None:
    original = decode_image((DEV / "img59.jpg").read_bytes()).rgb
    saved_bytes = (protected_multi_face / "img59.jpg").read_bytes()
    saved = decode_image(saved_bytes).rgb
    assert saved.shape == original.shape
    ref = runtime.detect(original)
    found = match_faces(ref, runtime.detect(saved))
    assert len(ref) == 2
    # The cloak changes who a face is, not whether it is one: every face is still detected.
    assert all(face is not None for face in found), [face is not None for face in found]
    for model in SURROGATES:
        thr = runtime.threshold(model)
        before = embed(runtime, original, ref, model)
        for i, face in enumerate(found):
            assert face is not None
            # aligned where it is found now, and where it was (a recognizer may align on
            # either): unmatched both ways
            for where, at in (("re-detected", face), ("original box", ref[i])):
                sim = float(embed(runtime, saved, [at], model)[0] @ before[i])
                assert sim < thr, (model, i, where, sim, thr)


def test_output_keeps_format_and_strips_metadata(protected_multi_face: Path) -> None:
    data = (protected_multi_face / "img59.jpg").read_bytes()
    assert data[:3] == b"\xff\xd8\xff"  # still a JPEG
    # no APP1 (EXIF/XMP) segment, and Pillow finds no EXIF: searching the whole file for
    # b"GPS" would also hit compressed image bytes
    assert b"\xff\xe1" not in data[: data.index(b"\xff\xda")]
    with Image.open(io.BytesIO(data)) as im:
        assert not im.getexif()
    assert (protected_multi_face / "img59.jpg.preview.png").stat().st_size > 0


def test_report_schema(protected_multi_face: Path) -> None:
    import jsonschema

    schema = json.loads((Path(__file__).parents[1] / "docs" / "report.schema.json").read_text())
    report = json.loads((protected_multi_face / "img59.jpg.json").read_text())
    jsonschema.validate(report, schema)
    assert report["status"] == "protected"
    assert len(report["verification"]["faces"]) == 2
    for face in report["verification"]["faces"]:
        for model in SURROGATES:
            saved = face["models"][model]["saved"]
            assert saved["matched"] is False
            assert saved["clean_similarity"] > saved["threshold"]
    assert report["verification"]["psnr"] > 30
    attack = report["attack"]
    assert attack["method"].startswith("DI-MI-FGSM (L-inf) + EOT(makeup, rescale, jpeg)")
    assert [e["probability"] for e in attack["eot"]] == [0.5, 0.5, 0.6]
    assert attack["eps_255"] == 12 and attack["max_steps"] == 40 and attack["margin"] == 0.5


def test_verify_prints_the_table(protected_multi_face: Path, runtime: Runtime) -> None:
    original = (DEV / "img59.jpg").read_bytes()
    table = verify_pair(
        original, (protected_multi_face / "img59.jpg").read_bytes(), ["w600k_mbf"], runtime
    )
    text = format_table(table)
    assert "jpeg75" in text and "w600k_mbf" in text
    same = verify_pair(original, original, ["sface"], runtime)
    assert "YES" in format_table(same)  # an unprotected copy is still matched
    assert same.matched_faces["sface"]["saved"] == 2


def test_models_list_shows_licences() -> None:
    proc = _run("models", "list")
    assert proc.returncode == 0
    for name in ("w600k_mbf", "sface", "facenet", "yunet", "scrfd_500m", "2d106det"):
        assert name in proc.stdout
    assert "non-commercial" in proc.stdout and "Apache-2.0" in proc.stdout


def test_mixed_batch_reports_each_file(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(noise).save(tmp_path / "noface.png")
    (tmp_path / "notes.jpg").write_bytes(b"this is not a photo")
    out = tmp_path / "out"
    proc = _run("protect", str(tmp_path / "noface.png"), str(tmp_path / "notes.jpg"),
                str(tmp_path / "missing.jpg"), "-o", str(out), "--steps", "2")  # fmt: skip
    assert proc.returncode != 0
    assert "noface.png: no_face (no_face:" in proc.stderr
    assert "notes.jpg: failed (not_an_image:" in proc.stderr
    assert "missing.jpg: failed (unreadable)" in proc.stderr
    assert not (out / "noface.png").exists() and not (out / "notes.jpg").exists()
    assert json.loads((out / "noface.png.json").read_text())["status"] == "no_face"
