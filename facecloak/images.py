"""Safe photo decoding and re-encoding (numpy + Pillow only; the web gateway uses it too).

Every refusal is an :class:`ImageError` with a machine-readable ``code``:

- ``not_an_image``: the bytes are not a picture at all.
- ``corrupt_image``: a picture format was recognised but the data is damaged or truncated.
- ``too_many_pixels``: the header announces more than ``max_pixels`` (checked before any
  pixel is decoded, so decompression bombs cost nothing).
- ``animated_image``: several frames (animated GIF/PNG/WebP, multi-page TIFF).
- ``unsupported_format``: a picture, but not JPEG, PNG, WebP, BMP or TIFF.

The format is always decided from the content, never from a file name. Decoded pixels are
8-bit RGB with the EXIF orientation applied; alpha is kept apart. Encoding writes the same
format back with no EXIF/GPS/XMP/comments (the ICC profile is kept), so the output displays
exactly like the input.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageCms,
    ImageFile,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from facecloak.jpeg_tables import JpegTables, read_tables, save_params

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

log = logging.getLogger(__name__)

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
