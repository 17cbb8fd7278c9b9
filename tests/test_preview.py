"""The preview PNG: each face at 100% next to its protected crop and FLIP error map."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from workers.jobs.preview import CAPTION, GAP, face_preview, flip_map, report_boxes, write_preview
from workers.jobs.visibility import widened_box


def _photos() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    before = rng.integers(60, 200, (120, 200, 3), dtype=np.uint8)
    after = before.copy()
    after[40:60, 40:60] = 255 - after[40:60, 40:60]  # a visible change inside face 1 only
    return before, after


def test_rows_show_each_face_at_full_size() -> None:
    before, after = _photos()
    boxes = [(30.0, 30.0, 70.0, 70.0), (120.0, 20.0, 180.0, 100.0)]
    sheet = np.asarray(face_preview(before, after, boxes))
    crops = [widened_box(b, before.shape) for b in boxes]
    widths = [x1 - x0 for x0, _, x1, _ in crops]
    heights = [y1 - y0 for _, y0, _, y1 in crops]
    assert sheet.shape[1] == max(3 * w + 2 * GAP for w in widths)
    assert sheet.shape[0] == sum(h + CAPTION for h in heights) + GAP
    x0, y0, x1, y1 = crops[0]
    # the first panel is the original crop, pixel for pixel (100% zoom)
    assert np.array_equal(sheet[CAPTION : CAPTION + y1 - y0, : x1 - x0], before[y0:y1, x0:x1])
    w = x1 - x0
    second = sheet[CAPTION : CAPTION + y1 - y0, w + GAP : 2 * w + GAP]
    assert np.array_equal(second, after[y0:y1, x0:x1])


def test_flip_map_is_dark_where_nothing_changed() -> None:
    before, after = _photos()
    heat = flip_map(before, after).astype(int).sum(axis=2)
    assert heat[50, 50] > 3 * heat[100, 150] and heat[100, 150] < 60


def test_write_preview_from_encoded_photos_and_report_boxes(tmp_path: Path) -> None:
    before, after = _photos()
    data = []
    for rgb in (before, after):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "PNG")
        data.append(buf.getvalue())
    report = {"verification": {"faces": [{"box": [30, 30, 70, 70]}]}}
    assert report_boxes(report) == [(30.0, 30.0, 70.0, 70.0)]
    assert report_boxes({"status": "failed"}) == []
    write_preview(data[0], data[1], tmp_path / "p.png", 10**7, report_boxes(report))
    with Image.open(tmp_path / "p.png") as im:
        assert im.format == "PNG" and im.height < before.shape[0]
    write_preview(data[0], data[1], tmp_path / "whole.png", 10**7)  # no boxes: whole photo
    with Image.open(tmp_path / "whole.png") as im:
        assert im.width == 3 * before.shape[1] + 2 * GAP
