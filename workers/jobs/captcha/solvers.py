"""Who reads CAPTCHAs in the benchmark: our OCR models, an off-the-shelf solver, and the
clean-ups an attacker runs first (real Pillow operations, not the attack's approximations).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import nn

from workers.jobs.captcha.data import to_tensor
from workers.jobs.captcha.train import read

Solver = Callable[[np.ndarray], list[str]]
"""``[N, H, W, 3]`` uint8 images -> the texts read (upper-cased)."""


def _per_image(fn: Callable[[Image.Image], Image.Image]) -> Callable[[np.ndarray], np.ndarray]:
    def apply(images: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(fn(Image.fromarray(im)).convert("RGB")) for im in images])

    return apply


def _jpeg(im: Image.Image, quality: int = 75) -> Image.Image:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _binarise(im: Image.Image, level: int = 200) -> Image.Image:
    return im.convert("L").point(lambda v: 255 if v > level else 0)


def otsu_level(gray: Image.Image) -> int:
    """Otsu's threshold of an 8-bit grey image: the level that maximises the variance
    between the two classes it splits the histogram into."""
    hist = np.asarray(gray.histogram()[:256], dtype=np.float64)
    p = hist / max(hist.sum(), 1.0)
    below, mean_below = np.cumsum(p), np.cumsum(p * np.arange(256))
    between = (mean_below[-1] * below - mean_below) ** 2 / np.maximum(below * (1 - below), 1e-12)
    return int(np.argmax(between))


def _otsu(im: Image.Image) -> Image.Image:
    gray = im.convert("L")
    return _binarise(gray, otsu_level(gray))


PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda images: images,
    "median3": _per_image(lambda im: im.filter(ImageFilter.MedianFilter(3))),
    "blur1": _per_image(lambda im: im.filter(ImageFilter.GaussianBlur(1.0))),
    "jpeg75": _per_image(_jpeg),
    "gray": _per_image(lambda im: im.convert("L")),
    "binarise": _per_image(_binarise),
    "otsu": _per_image(_otsu),
}
"""An attacker's clean-ups (Pillow): 3x3 median, Gaussian blur sigma 1, JPEG q75,
grayscale, threshold at luma 200/255, threshold at each image's own Otsu level."""


def model_solver(model: nn.Module) -> Solver:
    """One of our OCR models as a solver."""

    def solve(images: np.ndarray) -> list[str]:
        with torch.no_grad():
            return read(model, to_tensor(images))

    return solve


def ddddocr_solver() -> Solver | None:
    """ddddocr (PyPI, its ONNX model ships in the wheel), or None when not installed."""
    try:
        import ddddocr
    except ImportError:
        return None
    ocr = ddddocr.DdddOcr(show_ad=False)

    def solve(images: np.ndarray) -> list[str]:
        out = []
        for im in images:
            buffer = io.BytesIO()
            Image.fromarray(im).save(buffer, "PNG")
            out.append(str(ocr.classification(buffer.getvalue())).strip().upper())
        return out

    return solve


def solve_rate(solver: Solver, images: np.ndarray, answers: list[str]) -> float:
    """Share of CAPTCHAs read exactly (case-insensitive, as the service compares)."""
    read_texts = solver(images)
    return sum(a.upper() == b for a, b in zip(read_texts, answers, strict=True)) / len(answers)
