"""Encoding pixels back into the photo's own format, with no metadata but ICC."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from facecloak.images.decode import DecodedImage
from facecloak.jpeg_tables import save_params


def _grey_image(arr: np.ndarray, like: DecodedImage, fmt: str) -> Image.Image | None:
    """A grey original that is still grey (R = G = B) in its own mode: ``L``, or 16-bit
    (``I;16``, levels x257) for a 16-bit PNG/TIFF; None otherwise (saved as RGB).

    Palette photos are saved as RGB (or ``L`` when grey): a palette cannot hold the change.
    """
    grey_mode = like.mode in ("1", "L", "LA", "La", "I", "F") or like.mode.startswith("I;16")
    grey_palette = like.mode in ("P", "PA") and not like.icc_profile
    if not (grey_mode or grey_palette) or like.icc_profile:
        return None
    if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
        return None
    luma = np.ascontiguousarray(arr[..., 0])
    if like.bit_depth > 8 and fmt in ("PNG", "TIFF"):
        return Image.fromarray(luma.astype(np.uint16) * 257)  # mode I;16
    return Image.fromarray(luma, "L")


def encode_image(rgb: np.ndarray, like: DecodedImage, jpeg_quality: int = 95) -> bytes:
    """Encode ``rgb`` (H, W, 3 uint8) in the format of ``like``, with no metadata but ICC.

    JPEG: with the original's own tables and subsampling when known
    (:mod:`facecloak.jpeg_tables`), else 4:4:4 at ``jpeg_quality``; PNG, TIFF, BMP and
    lossless WebP: lossless; lossy WebP: ``jpeg_quality``. Alpha from ``like`` is
    re-attached where the format holds it (resized if ``rgb`` has another size).
    Orientation is already in the pixels.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {arr.dtype}")
    fmt = like.format
    im = _grey_image(arr, like, fmt) or Image.fromarray(np.ascontiguousarray(arr), "RGB")
    if like.alpha is not None and fmt in ("PNG", "WEBP", "TIFF", "BMP"):
        alpha = Image.fromarray(like.alpha, "L")
        if alpha.size != im.size:
            alpha = alpha.resize(im.size, Image.Resampling.BILINEAR)
        if im.mode == "I;16":
            im = im.convert("L")  # Pillow has no 16-bit grey + alpha mode
        im.putalpha(alpha)
    params: dict[str, object] = {}
    if like.icc_profile:
        params["icc_profile"] = like.icc_profile
    if fmt == "JPEG":
        params.update(save_params(like.jpeg_tables, jpeg_quality))
    elif fmt == "PNG":
        params.update(compress_level=6)
    elif fmt == "WEBP":
        if like.lossless:
            params.update(lossless=True, quality=100, method=4)
        else:
            params.update(quality=jpeg_quality, method=4)
    elif fmt == "TIFF":
        params.update(compression="tiff_lzw")
    elif fmt != "BMP":
        raise ValueError(f"cannot encode format {fmt!r}")
    out = io.BytesIO()
    im.save(out, format=fmt, **params)
    return out.getvalue()
