"""Opening untrusted bytes and reading the header: format, displayed size, frames, refusals.

Nothing here decodes a pixel: :func:`image_info` and :func:`check_image` read headers only,
so a decompression bomb or a damaged file is refused before it costs anything.
"""

from __future__ import annotations

import io
from typing import NamedTuple

from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

# Registered explicitly: Image.open(formats=...) needs every listed plugin loaded.
_PLUGINS = (
    BmpImagePlugin,
    GifImagePlugin,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
# What Pillow may even try to parse: the supported formats and GIF (only so that animated
# GIFs get a clear error). Camera JPEGs with an embedded preview come back as "MPO".
DEFAULT_MAX_PIXELS = 40_000_000
"""Largest photo accepted by default, in pixels (Pillow's own bomb limit is ~89 M)."""

_OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

# Signatures of picture formats we recognise but do not accept (others: ``not_an_image``).
_OTHER_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"8BPS", "PSD"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG2000"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
_SUPPORTED_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),
    (0, b"\x89PNG\r\n\x1a\n"),
    (8, b"WEBP"),
    (0, b"BM"),
    (0, b"II*\x00"),
    (0, b"MM\x00*"),
)

# EXIF Orientation (tag 0x0112) -> the transpose that makes the photo display upright.
_ORIENTATION_OPS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112


class ImageError(Exception):
    """A photo that cannot be accepted; ``code`` is machine-readable, ``message`` human."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ImageInfo(NamedTuple):
    """Header facts: format, displayed width and height (EXIF orientation applied), frames."""

    format: str
    width: int
    height: int
    frames: int


def _sniff(data: bytes) -> tuple[bool, str | None]:
    """(looks like a supported format, name of a recognised unsupported format)."""
    supported = any(data[o : o + len(s)] == s for o, s in _SUPPORTED_SIGNATURES)
    if supported and data[8:12] == b"WEBP" and data[:4] != b"RIFF":
        supported = False
    other = next((n for o, s, n in _OTHER_SIGNATURES if data[o : o + len(s)] == s), None)
    return supported, other


def _open(data: bytes) -> Image.Image:
    """Open (headers only) or raise the right ImageError."""
    if not data:
        raise ImageError("not_an_image", "empty file")
    supported, other = _sniff(data)
    try:
        return Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", f"image is far too large: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        if other is not None:
            raise ImageError(
                "unsupported_format",
                f"{other} images are not supported; use JPEG, PNG, WebP, BMP or TIFF",
            ) from exc
        if supported:
            raise ImageError("corrupt_image", "the image header is damaged") from exc
        raise ImageError("not_an_image", "the file is not a recognised image") from exc
    except Exception as exc:  # any parser failure on a header is a damaged file
        if supported or other is not None:
            raise ImageError("corrupt_image", f"the image header is damaged: {exc}") from exc
        raise ImageError("not_an_image", "the file is not a recognised image") from exc


def _format_of(im: Image.Image) -> str:
    fmt = im.format or "?"
    return "JPEG" if fmt == "MPO" else fmt


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
        value = int(value)
    except Exception:  # unreadable EXIF: treat as upright rather than refuse the photo
        return 1
    return value if value in _ORIENTATION_OPS else 1


def _frames(im: Image.Image) -> int:
    if im.format == "MPO":  # camera JPEG with a preview image: one photo
        return 1
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception as exc:
        raise ImageError("corrupt_image", f"cannot read the frames: {exc}") from exc


def _info(im: Image.Image) -> ImageInfo:
    w, h = im.size
    if _orientation(im) in (5, 6, 7, 8):
        w, h = h, w
    return ImageInfo(_format_of(im), w, h, _frames(im))


def image_info(data: bytes) -> ImageInfo:
    """Cheap header-only inspection: ``(format, width, height, frames)``.

    Width and height are as displayed (EXIF orientation applied). GIF is reported too (so a
    caller can explain the refusal); ``not_an_image``, ``corrupt_image``,
    ``unsupported_format`` or ``too_many_pixels`` (past Pillow's own hard limit) are raised.
    """
    with _open(data) as im:
        return _info(im)


def _check(im: Image.Image, max_pixels: int) -> ImageInfo:
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"image is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.1f} MP",
        )
    fmt = _format_of(im)
    if fmt not in SUPPORTED_FORMATS and fmt != "GIF":
        raise ImageError("unsupported_format", f"{fmt} images are not supported")
    info = _info(im)
    if info.frames > 1:
        kind = "multi-page TIFF" if fmt == "TIFF" else f"animated {fmt}"
        raise ImageError(
            "animated_image",
            f"{kind} with {info.frames} frames is not supported; upload a single still photo",
        )
    if fmt == "GIF":
        raise ImageError(
            "unsupported_format", "GIF images are not supported; use JPEG, PNG, WebP, BMP or TIFF"
        )
    return info


def check_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Every refusal :func:`decode_image` would make from the header, without decoding."""
    limit = max_pixels
    with _open(data) as im:
        return _check(im, limit)
