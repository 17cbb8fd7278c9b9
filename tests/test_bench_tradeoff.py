"""The trade-off chart (``scripts/tradeoff.py``): held-out PSR over median face FLIP."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

from tests.helpers import REPO
from tests.test_bench import small_faceset


def tradeoff() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tradeoff", REPO / "scripts" / "tradeoff.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def point(label: str, flip: float, psr: float) -> dict[str, Any]:
    return {
        "label": label,
        "median_flip_face": flip,
        "median_jpeg_equivalent": 80.0,
        "median_ssim_face": 0.97,
        "median_psnr_face": 40.0,
        "median_flip_jpeg": {"90": 0.02, "75": 0.04, "50": 0.06},
        "held_out_psr": {"saved": psr, "median3": None},
        "seconds_per_face": 3.0,
        "refused": 0,
    }


def test_table_and_chart_from_points(tmp_path: Path) -> None:
    mod = tradeoff()
    points = [point("subtle", 0.015, 0.5), point("eps 8", 0.05, 0.93)]
    text = mod.table(points)
    assert "| subtle | 0.0150 | JPEG q80 |" in text
    assert "| 50% | n/a |" in text and "q75 0.0400" in text
    mod.chart(points, tmp_path / "t.png", "test")
    with Image.open(tmp_path / "t.png") as im:
        assert im.size == (840, 540)


def test_runs_on_a_face_folder_with_a_limit(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "faces").mkdir()
    faces = small_faceset(tmp_path / "faces")
    out = tmp_path / "chart" / "t.png"
    tradeoff().main(
        ["--faces", str(faces), "--out", str(out), "--limit", "1", "--presets", "low",
         "--eps", "4", "--steps", "2", "--conditions", "saved"]
    )  # fmt: skip
    points = json.loads(out.with_suffix(".json").read_text())
    assert [p["label"] for p in points] == ["low", "eps 4"]
    assert points[1]["eps"] == 4.0 and all(p["probes"] == 1 for p in points)
    assert all(p["median_flip_face"] > 0 for p in points)
    assert out.stat().st_size > 0
    assert "| low |" in capsys.readouterr().out
