"""The benchmark on real protected photos: visibility, JPEG levels, clean-ups, time per face."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from facecloak.settings import Settings
from models.registry import ModelStore
from tests.helpers import faces_dir, runtime_for
from workers.jobs.bench import BenchConfig, markdown, run_bench

MODELS = ["w600k_mbf", "sface", "facenet"]


def small_faceset(tmp: Path) -> Path:
    """Two small photos of each of two people of dev/, linked (never copied) into ``tmp``."""
    dev = faces_dir("dev")
    people = {"a": ["img27.jpg", "img28.jpg"], "b": ["img21.jpg", "img20.jpg"]}
    for names in people.values():
        for name in names:
            (tmp / name).symlink_to(dev / name)
    (tmp / "identities.json").write_text(json.dumps(people))
    return tmp


@pytest.fixture(scope="module")
def result(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, model_store: ModelStore
) -> dict[str, Any]:
    faces = small_faceset(tmp_path_factory.mktemp("faces"))
    cfg = BenchConfig(
        faces=faces, models=MODELS, conditions=("saved", "median3", "bits5"), limit=1, steps=3
    )
    return run_bench(cfg, runtime_for(settings, model_store), [["w600k_mbf", "sface"]])


def test_probe_rows_carry_the_saved_photo_visibility(result: dict[str, Any]) -> None:
    assert result["probes"] == 1 and result["steps"] == 3
    row = result["runs"][0]["probes"][0]
    assert row["photo"] == "img27.jpg" and row["faces"] >= 1
    assert all(s <= 3 for s in row["steps"])
    vis = row["visibility"]
    assert vis is not None and vis["flip"] > 0 and 20 < vis["psnr"] < 60
    assert 50 <= vis["jpeg_equivalent"] <= 100
    levels = row["flip_jpeg"]
    assert 0 < levels["90"] < levels["75"] < levels["50"]  # lower quality is more visible
    assert row["seconds_per_face"] > 0 and row["seconds"] >= row["attack_seconds"]


def test_psr_covers_the_cleanups_and_the_held_out_model(result: dict[str, Any]) -> None:
    run = result["runs"][0]
    for model in MODELS:
        assert set(run["psr"][model]) >= {"saved", "median3", "bits5", "counted"}
    row = run["probes"][0]
    assert set(row["after"]) == {"saved", "median3", "bits5"}
    s = run["summary"]
    assert s["faces_measured"] == 1
    assert s["median_flip_face"] == row["visibility"]["flip"]
    assert s["median_flip_jpeg"]["75"] == row["flip_jpeg"]["75"]


def test_markdown_says_as_visible_as(result: dict[str, Any]) -> None:
    text = markdown(result)
    assert "PSR median3" in text and "PSR bits5" in text
    assert "| w600k_mbf + sface | facenet | held-out |" in text
    assert "FLIP JPEG q75" in text and "as visible as" in text and "steps 3" in text
