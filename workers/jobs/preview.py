"""The preview PNG (``facecloak protect --preview``): what changed on each face, at 100%.

One row per face: the original crop, the protected crop (both at 100% zoom, no resampling)
and FLIP's error map of the crop (magma: black where nothing is visible, yellow where the
change is most visible), under a caption with the face's FLIP and JPEG equivalent. The
crop is the visibility crop (face box widened by 30%), so the picture is the number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flip_evaluator
import numpy as np
from PIL import Image, ImageDraw

from facecloak.images import decode_image
from workers.jobs.visibility import FLIP_PPD, Box, as_rgb8, face_visibility

GAP = 8  # px between panels and rows
OVERVIEW = 800  # px: the longest side of the whole-photo fallback
CAPTION = 16  # px of caption above each row
BACKGROUND = (255, 255, 255)


def flip_map(before: np.ndarray, after: np.ndarray, ppd: float = FLIP_PPD) -> np.ndarray:
    """FLIP's per-pixel error of two HxWx3 uint8 crops as an HxWx3 uint8 magma heat map."""
    ref = as_rgb8(before).astype(np.float32) / 255.0
    test = as_rgb8(after).astype(np.float32) / 255.0
    error, _, _ = flip_evaluator.evaluate(
        ref, test, "LDR", applyMagma=True, parameters={"ppd": float(ppd)}
    )
    return np.clip(np.asarray(error) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _row(before: np.ndarray, after: np.ndarray, box: Box, label: str) -> Image.Image:
    """One face: caption over original | protected | FLIP map."""
    vis = face_visibility(before, after, box)
    x0, y0, x1, y1 = vis.crop
    a, b = as_rgb8(before[y0:y1, x0:x1]), as_rgb8(after[y0:y1, x0:x1])
    panels = [a, b, flip_map(a, b)]
    h, w = a.shape[:2]
    row = Image.new("RGB", (3 * w + 2 * GAP, h + CAPTION), BACKGROUND)
    for i, panel in enumerate(panels):
        row.paste(Image.fromarray(panel), (i * (w + GAP), CAPTION))
    text = (
        f"{label}: original | protected | FLIP map  -  FLIP {vis.flip:.4f}, "
        f"as visible as JPEG {vis.jpeg_equivalent}"
    )
    ImageDraw.Draw(row).text((2, 2), text, fill=(0, 0, 0))
    return row


def _overview(rgb: np.ndarray) -> np.ndarray:
    """The photo with its longest side at most OVERVIEW px (box-filtered)."""
    img = Image.fromarray(as_rgb8(rgb))
    img.thumbnail((OVERVIEW, OVERVIEW), Image.Resampling.BOX)
    return np.asarray(img)


def face_preview(before: np.ndarray, after: np.ndarray, boxes: Sequence[Box]) -> Image.Image:
    """Every face's row stacked; the whole photo as one "face" when ``boxes`` is empty."""
    if before.shape != after.shape:
        raise ValueError(f"photos differ in size: {before.shape} vs {after.shape}")
    if boxes:
        rows = [_row(before, after, box, f"face {i + 1}") for i, box in enumerate(boxes)]
    else:
        small_a, small_b = _overview(before), _overview(after)
        h, w = small_a.shape[:2]
        rows = [_row(small_a, small_b, (0.0, 0.0, float(w), float(h)), "whole photo, scaled")]
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows) + GAP * (len(rows) - 1)))
    sheet.paste(BACKGROUND, (0, 0, sheet.width, sheet.height))
    top = 0
    for r in rows:
        sheet.paste(r, (0, top))
        top += r.height + GAP
    return sheet


def report_boxes(report: Mapping[str, Any]) -> list[Box]:
    """The verified face boxes of a protect report (``outcome.report``), in face order."""
    verification = report.get("verification") or {}
    return [
        (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        for b in (f["box"] for f in verification.get("faces", []))
    ]


def write_preview(
    original: bytes,
    protected: bytes,
    path: Path,
    max_pixels: int,
    boxes: Sequence[Box] | None = None,
) -> None:
    """Write the preview PNG for two encoded photos; without ``boxes``, the whole photo."""
    before = decode_image(original, max_pixels).rgb
    after = decode_image(protected, max_pixels).rgb
    face_preview(before, after, boxes or []).save(path, "PNG")
