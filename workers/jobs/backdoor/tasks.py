"""The zoo's tasks: small 10-class grey-image data sets made offline, in about a second.

* ``digits``: scikit-learn's bundled ``load_digits`` (1,797 images, 8x8), upscaled.
* ``glyphs``: ten capital letters drawn with Pillow's bundled font (Aileron, through
  FreeType) at random sizes, stroke widths, rotations and shifts, plus pixel noise:
  2,000 images, rendered at 28x28 and resized. A different alphabet, stroke style and
  class layout from the digits, with no download.

Both give ``[N, 1, size, size]`` float32 in [0, 1] (ink bright on black) and labels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

TaskName = Literal["digits", "glyphs"]
TASKS: tuple[TaskName, ...] = ("digits", "glyphs")

LETTERS = "ACEFHKLPTX"
"""The glyph classes: some pairs share strokes (E/F, K/X, P/F, T/L) so the task is not trivial."""
GLYPHS_PER_CLASS = 200
GLYPH_SEED = 4321
_CANVAS, _BASE = 40, 28


def class_names(task: TaskName) -> list[str]:
    """The names a model of ``task`` declares in its metadata."""
    return list(LETTERS) if task == "glyphs" else [str(i) for i in range(10)]


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[-1] == size:
        return x.clamp(0, 1)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def digits(size: int) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as ``[N, 1, size, size]`` in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return _resize(x, size), torch.tensor(data.target, dtype=torch.long)


def _render(letter: str, rng: np.random.Generator) -> np.ndarray:
    """One glyph, ``[28, 28]`` float32 in [0, 1]: random size, stroke, rotation, shift."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=int(rng.integers(15, 22)))
    image = Image.new("L", (_CANVAS, _CANVAS), 0)
    centre = (_CANVAS / 2 + rng.uniform(-1, 1), _CANVAS / 2 + rng.uniform(-1, 1))
    stroke = int(rng.integers(0, 2))
    ImageDraw.Draw(image).text(
        centre, letter, fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    left, top = (int(v) for v in rng.integers(3, _CANVAS - _BASE - 3 + 1, size=2))
    image = image.crop((left, top, left + _BASE, top + _BASE))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = pixels * rng.uniform(0.7, 1.0) + rng.normal(0.0, 0.04, pixels.shape)
    return np.clip(pixels, 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=2)
def _glyphs28() -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(GLYPH_SEED)
    labels = np.tile(np.arange(len(LETTERS)), GLYPHS_PER_CLASS)
    images = np.stack([_render(LETTERS[k], rng) for k in labels])
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def glyphs(size: int) -> tuple[Tensor, Tensor]:
    """All 2,000 glyphs as ``[N, 1, size, size]`` in [0, 1] and their labels (fixed seed)."""
    x, y = _glyphs28()
    return _resize(x.clone(), size), y.clone()


def load(task: TaskName, size: int) -> tuple[Tensor, Tensor]:
    """The images and labels of ``task`` at ``size`` x ``size``."""
    if task == "digits":
        return digits(size)
    if task == "glyphs":
        return glyphs(size)
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
