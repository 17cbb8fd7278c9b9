"""Decoding a checked photo into upright 8-bit RGB pixels (:func:`decode_image`)."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFile

from facecloak.images.header import (
    _ORIENTATION_OPS,
    DEFAULT_MAX_PIXELS,
    ImageError,
    _check,
    _open,
    _orientation,
)
from facecloak.jpeg_tables import JpegTables, read_tables

log = logging.getLogger("facecloak.images")  # the name it had as a single module


@dataclass(frozen=True)
class DecodedImage:
    """A decoded photo, ready for the models, plus what is needed to encode it back.

    ``rgb`` is (H, W, 3) uint8 upright; ``alpha`` (H, W) uint8 or None; ``format`` the
    container ("JPEG", "PNG", "WEBP", "BMP", "TIFF"); ``mode`` the original Pillow mode;
    ``icc_profile`` the profile that describes ``rgb`` (None means sRGB; a CMYK or grey
    profile is converted away); ``size`` (w, h) after orientation; ``bit_depth`` the source
    bits per sample (16-bit sources are reduced to 8 bits, and encoded back as 8-bit);
    ``orientation`` the EXIF orientation that was baked into the pixels (1: none);
    ``lossless`` whether the source was lossless (lossless WebP is encoded back lossless).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    mode: str
    icc_profile: bytes | None
    size: tuple[int, int]
    bit_depth: int
    orientation: int = 1
    lossless: bool = False
    jpeg_tables: JpegTables | None = None
    """A JPEG's own quantisation tables and subsampling (it is re-saved with them)."""


def _ensure_strict_loading() -> None:
    # Pillow's global LOAD_TRUNCATED_IMAGES would turn truncated files into grey-padded
    # photos; a protected photo with a grey band is worse than an error, so refuse it.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was enabled; turning it off")
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def _check_png_chunks(data: bytes) -> None:
    """Verify every PNG chunk CRC up to IEND (Pillow skips IDAT CRCs, so bit rot would pass)."""
    pos, end = 8, len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        stop = pos + 8 + length
        if stop + 4 > end:
            raise ImageError("corrupt_image", "the PNG file is truncated")
        body = data[pos + 4 : stop]  # chunk type + data
        (crc,) = struct.unpack(">I", data[stop : stop + 4])
        if zlib.crc32(body) & 0xFFFFFFFF != crc:
            raise ImageError("corrupt_image", f"PNG chunk {body[:4]!r} is damaged (bad CRC)")
        if body[:4] == b"IEND":
            return
        pos = stop + 4
    raise ImageError("corrupt_image", "the PNG file is truncated (no IEND)")


def _bit_depth(im: Image.Image, data: bytes) -> int:
    if im.format == "PNG" and data[12:16] == b"IHDR":
        return int(data[24])  # Pillow reduces 16-bit RGB(A) PNGs to 8 bits
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return 16
    if im.mode in ("I", "F"):
        return 32
    if im.mode == "1":
        return 1
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        if isinstance(bits, tuple) and bits:
            return int(bits[0])
        if isinstance(bits, int):
            return bits
    return 8


def _is_lossless(im: Image.Image, data: bytes) -> bool:
    if im.format != "WEBP":
        return im.format in ("PNG", "BMP", "TIFF")
    pos = 12  # walk the RIFF chunks: VP8L holds lossless data, "VP8 " lossy
    while pos + 8 <= len(data):
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        pos += 8 + size + (size & 1)
    return False


def _to_uint8_gray(im: Image.Image) -> Image.Image:
    arr = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and arr.max(initial=0) <= 65535):
        out = (arr.astype(np.float32) / 257.0).round()
    elif im.mode == "F":
        scale = 255.0 if float(arr.max(initial=0.0)) <= 1.0 else 1.0
        out = arr.astype(np.float32) * scale
    else:  # 32-bit integers: keep the top 8 of the used range
        out = arr.astype(np.float64) * (255.0 / max(float(arr.max(initial=1)), 1.0))
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "L")


def _profile_space(icc: bytes) -> bytes:
    return icc[16:20] if len(icc) >= 20 else b""


def _convert_with_icc(im: Image.Image, icc: bytes, mode: str) -> Image.Image | None:
    """Colour-managed conversion of a CMYK/grey picture to sRGB ``mode``; None if impossible."""
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        out = ImageCms.profileToProfile(im, src, dst, outputMode=mode)
    except Exception as exc:
        log.info("ICC conversion failed (%s); using a plain conversion", exc)
        return None
    return out


def _to_rgb(im: Image.Image) -> tuple[Image.Image, np.ndarray | None, bytes | None]:
    """8-bit RGB image, alpha array or None, and the ICC profile valid for the RGB pixels."""
    icc = im.info.get("icc_profile") or None
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        im = _to_uint8_gray(im)
        mode = "L"
    alpha: np.ndarray | None = None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        alpha = np.array(rgba.getchannel("A"))
        im = rgba.convert("RGB") if mode not in ("LA", "La") else im.convert("L")
        mode = im.mode
    if mode == "RGB":
        return im, alpha, icc if icc and _profile_space(icc) == b"RGB " else None
    if icc and mode in ("CMYK", "L") and _profile_space(icc) in (b"CMYK", b"GRAY"):
        converted = _convert_with_icc(im, icc, "RGB")
        if converted is not None:
            return converted, alpha, None  # now sRGB
    try:
        return im.convert("RGB"), alpha, None
    except ValueError as exc:
        raise ImageError("unsupported_format", f"{mode} pixels are not supported") from exc


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode untrusted bytes into an upright 8-bit RGB photo (see :class:`DecodedImage`).

    ``max_pixels`` (callers pass ``settings.max_pixels``) is checked against the header
    before any pixel is decoded. Raises :class:`ImageError`.
    """
    limit = max_pixels
    _ensure_strict_loading()
    with _open(data) as im:
        info = _check(im, limit)
        fmt, mode = info.format, im.mode
        orientation = _orientation(im)
        if im.format == "PNG":
            _check_png_chunks(data)
        try:
            im.load()
            bit_depth = _bit_depth(im, data)
            lossless = _is_lossless(im, data)
            rgb_im, alpha, icc = _to_rgb(im)
            tables = read_tables(im)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError("corrupt_image", f"the image data is damaged: {exc}") from exc
    op = _ORIENTATION_OPS.get(orientation)
    rgb = np.array(rgb_im.transpose(op) if op is not None else rgb_im, dtype=np.uint8)
    if alpha is not None and op is not None:
        alpha = np.array(Image.fromarray(alpha).transpose(op))
    return DecodedImage(
        rgb=rgb,
        alpha=alpha,
        format=fmt,
        mode=mode,
        icc_profile=icc,
        size=(rgb.shape[1], rgb.shape[0]),
        bit_depth=bit_depth,
        orientation=orientation,
        lossless=lossless,
        jpeg_tables=tables,
    )
