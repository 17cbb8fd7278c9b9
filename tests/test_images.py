"""facecloak.images: refusals with the right codes, orientation, metadata stripping, formats."""

from __future__ import annotations

import dataclasses
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, JpegImagePlugin

from facecloak.images import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageError,
    check_image,
    decode_image,
    encode_image,
    image_info,
)
from facecloak.settings import Settings

from .helpers import FACES

PHOTO = FACES / "dev" / "img11.jpg"  # 600x800 JPEG, one face, no EXIF orientation

# Orientation tag value -> transpose that shows the stored pixels upright.
UPRIGHT_OP = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE_OP = {
    **UPRIGHT_OP,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def _code(data: bytes, **kw: object) -> str:
    with pytest.raises(ImageError) as info:
        decode_image(data, **kw)  # type: ignore[arg-type]
    return info.value.code


def _save(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def _gradient(w: int = 64, h: int = 48) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _png(width: int, height: int, bit_depth: int, color_type: int, raw: bytes | None) -> bytes:
    """A minimal PNG; ``raw`` is the filtered scanline data (None: a header with 16 bytes of
    pixel data, far too few: decoding it would fail)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(raw if raw is not None else b"\0" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    if not PHOTO.exists():
        pytest.skip(f"face photos not found at {FACES}")
    with Image.open(PHOTO) as im:
        return im.convert("RGB").resize((300, 400), Image.Resampling.LANCZOS)


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, world", bytes(range(256)) * 4, b"%PDF-1.7\n", b"<html></html>", b"RIFF1234WAVE"],
)
def test_not_an_image(data: bytes) -> None:
    assert _code(data) == "not_an_image"
    with pytest.raises(ImageError):
        image_info(data)


def test_truncated_and_damaged_files_are_corrupt(photo: Image.Image) -> None:
    jpeg = _save(photo, "JPEG", quality=90)
    png = _save(photo, "PNG")
    assert _code(jpeg[: len(jpeg) // 2]) == "corrupt_image"
    assert _code(jpeg[:300]) == "corrupt_image"
    assert _code(png[: len(png) // 2]) == "corrupt_image"
    assert _code(png[:40]) == "corrupt_image"
    bad_crc = bytearray(png)
    bad_crc[len(png) // 2] ^= 0xFF  # inside IDAT: CRC or zlib stream breaks
    assert _code(bytes(bad_crc)) == "corrupt_image"
    assert _code(b"\x89PNG\r\n\x1a\n" + b"\0" * 40) == "corrupt_image"


def test_truncated_stays_corrupt_even_if_pillow_was_told_to_allow_it(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    jpeg = _save(photo, "JPEG", quality=90)
    assert _code(jpeg[: len(jpeg) // 2]) == "corrupt_image"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_pixel_cap_is_checked_before_decoding() -> None:
    header = _png(50_000, 50_000, 8, 2, None)  # 2.5 G pixels, no pixel data at all
    t0 = time.perf_counter()
    assert _code(header) == "too_many_pixels"
    with pytest.raises(ImageError) as info:
        check_image(header)
    assert info.value.code == "too_many_pixels"
    # 50 MP: below Pillow's own bomb limit (~89 MP) but above the 40 MP default cap
    assert Settings().max_pixels == DEFAULT_MAX_PIXELS == 40_000_000
    assert _code(_png(10_000, 5_000, 8, 2, None)) == "too_many_pixels"
    assert time.perf_counter() - t0 < 1.0


def test_pixel_cap_argument_and_setting(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACECLOAK_MAX_PIXELS", "1000")
    settings = Settings()
    data = _save(photo, "PNG")
    assert _code(data, max_pixels=settings.max_pixels) == "too_many_pixels"  # 1000 px
    assert decode_image(data, max_pixels=400 * 300).size == (300, 400)
    assert _code(data, max_pixels=400 * 300 - 1) == "too_many_pixels"


def _frames(fmt: str, n: int = 3, **params: object) -> bytes:
    frames = [Image.new("RGB", (32, 24), (i * 60, 255 - i * 60, 90)) for i in range(n)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], **params)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_multi_frame_images_are_refused(fmt: str) -> None:
    data = _frames(fmt, duration=100) if fmt != "TIFF" else _frames(fmt)
    with pytest.raises(ImageError) as info:
        decode_image(data)
    assert info.value.code == "animated_image"
    assert "3 frames" in info.value.message
    assert image_info(data).frames == 3


def test_unsupported_formats() -> None:
    gif = _save(_gradient().convert("P"), "GIF")
    assert _code(gif) == "unsupported_format"
    assert image_info(gif).format == "GIF"
    ico = _save(_gradient(32, 32), "ICO")
    assert _code(ico) == "unsupported_format"
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64
    assert _code(heic) == "unsupported_format"


def test_format_is_decided_by_content() -> None:
    # dev/img47.jpg is a WebP file with a .jpg name
    webp_named_jpg = FACES / "dev" / "img47.jpg"
    if not webp_named_jpg.exists():
        pytest.skip("face photos not found")
    decoded = decode_image(webp_named_jpg.read_bytes())
    assert decoded.format == "WEBP"
    assert decode_image(_save(_gradient(), "BMP")).format == "BMP"


# --- decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(photo: Image.Image, orientation: int) -> None:
    upright = np.asarray(photo)
    stored = photo.transpose(INVERSE_OP[orientation]) if orientation > 1 else photo
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(_save(stored, "PNG", exif=exif.tobytes()))
    assert decoded.orientation == orientation
    assert decoded.rgb.flags.writeable and decoded.rgb.flags.c_contiguous
    assert decoded.size == (300, 400)
    np.testing.assert_array_equal(decoded.rgb, upright)


def _exif_with_gps(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "FaceCloakTestCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    return exif


def test_exif_rotated_jpeg_decodes_upright_and_encodes_without_exif(photo: Image.Image) -> None:
    stored = photo.transpose(Image.Transpose.ROTATE_90)  # what a phone held sideways stores
    exif = _exif_with_gps(6)
    data = _save(stored, "JPEG", quality=95, exif=exif.tobytes(), comment=b"secret comment")
    with Image.open(io.BytesIO(data)) as check:  # the test input really carries GPS
        assert check.getexif().get_ifd(0x8825)
        assert check.size == (400, 300)
    info = image_info(data)
    assert (info.format, info.width, info.height, info.frames) == ("JPEG", 300, 400, 1)

    decoded = decode_image(data)
    assert decoded.size == (300, 400)
    assert decoded.orientation == 6
    diff = np.abs(decoded.rgb.astype(int) - np.asarray(photo, dtype=int)).mean()
    assert diff < 3.0

    out = encode_image(decoded.rgb, decoded)
    assert b"Exif" not in out
    assert b"FaceCloakTestCam" not in out
    assert b"secret comment" not in out
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "JPEG"
        assert im.size == (300, 400)
        assert len(im.getexif()) == 0
        assert "exif" not in im.info and "comment" not in im.info
    again = decode_image(out)
    assert again.orientation == 1
    assert np.abs(again.rgb.astype(int) - decoded.rgb.astype(int)).mean() < 2.0


def test_gps_and_xmp_never_reach_the_output(photo: Image.Image) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>GPSLatitude 48</rdf:RDF></x:xmpmeta>'
    sources = {
        "JPEG": _save(photo, "JPEG", exif=_exif_with_gps(1).tobytes(), xmp=xmp),
        "PNG": _save(photo, "PNG", exif=_exif_with_gps(1).tobytes()),
        "WEBP": _save(photo, "WEBP", exif=_exif_with_gps(1).tobytes(), xmp=xmp),
        "TIFF": _save(photo, "TIFF", exif=_exif_with_gps(1).tobytes()),
    }
    for fmt, data in sources.items():
        decoded = decode_image(data)
        assert decoded.format == fmt
        out = encode_image(decoded.rgb, decoded)
        assert b"FaceCloakTestCam" not in out, fmt
        assert b"xmpmeta" not in out, fmt
        with Image.open(io.BytesIO(out)) as im:
            assert im.format == fmt
            exif = im.getexif()
            assert 0x8825 not in exif and 0x010F not in exif, fmt
            assert "xmp" not in im.info and "XML:com.adobe.xmp" not in im.info, fmt


def test_icc_profile_is_kept(photo: Image.Image) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        decoded = decode_image(_save(photo, fmt, icc_profile=icc))
        assert decoded.icc_profile == icc, fmt
        with Image.open(io.BytesIO(encode_image(decoded.rgb, decoded))) as im:
            assert im.info.get("icc_profile") == icc, fmt


def test_jpeg_keeps_its_own_tables_and_subsampling(photo: Image.Image) -> None:
    source = _save(photo, "JPEG", quality=80, subsampling=2)
    decoded = decode_image(source)
    out = encode_image(decoded.rgb, decoded, jpeg_quality=92)
    with Image.open(io.BytesIO(out)) as im, Image.open(io.BytesIO(source)) as src:
        assert JpegImagePlugin.get_sampling(im) == 2
        assert im.quantization == src.quantization  # type: ignore[attr-defined]
    again = decode_image(out).rgb.astype(int)
    # the same tables make the re-save nearly idempotent: a q92 re-save changes far more
    requality = _save(Image.fromarray(decoded.rgb), "JPEG", quality=92, subsampling=0)
    drift = np.abs(decode_image(requality).rgb.astype(int) - decoded.rgb).mean()
    assert np.abs(again - decoded.rgb).mean() < 0.5 * drift


def test_jpeg_without_readable_tables_is_444_at_the_given_quality(photo: Image.Image) -> None:
    decoded = decode_image(_save(photo, "JPEG", quality=80, subsampling=2))
    plain = dataclasses.replace(decoded, jpeg_tables=None)
    out = encode_image(plain.rgb, plain, jpeg_quality=92)
    reference = _save(Image.fromarray(decoded.rgb), "JPEG", quality=92, subsampling=0)
    with Image.open(io.BytesIO(out)) as im, Image.open(io.BytesIO(reference)) as ref:
        assert JpegImagePlugin.get_sampling(im) == 0
        assert im.quantization == ref.quantization  # type: ignore[attr-defined]


def test_cmyk_jpeg_has_no_tables_to_keep(photo: Image.Image) -> None:
    assert decode_image(_save(photo.convert("CMYK"), "JPEG", quality=95)).jpeg_tables is None


def test_png_alpha_round_trips(photo: Image.Image) -> None:
    rgba = photo.copy()
    alpha = np.tile(np.linspace(0, 255, 300).astype(np.uint8), (400, 1))
    alpha[:50] = 0
    rgba.putalpha(Image.fromarray(alpha))
    decoded = decode_image(_save(rgba, "PNG"))
    assert decoded.mode == "RGBA"
    assert decoded.alpha is not None
    np.testing.assert_array_equal(decoded.alpha, alpha)
    np.testing.assert_array_equal(decoded.rgb, np.asarray(photo))
    out = encode_image(decoded.rgb, decoded)
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), np.asarray(rgba))


def test_other_alpha_modes() -> None:
    la = Image.merge("LA", [_gradient().convert("L"), Image.new("L", (64, 48), 128)])
    decoded = decode_image(_save(la, "PNG"))
    assert decoded.alpha is not None and int(decoded.alpha.max()) == 128
    assert decoded.rgb.shape == (48, 64, 3)
    pal = _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    decoded = decode_image(_save(pal, "PNG", transparency=0))
    assert decoded.mode == "P" and decoded.alpha is not None
    assert set(np.unique(decoded.alpha)) <= {0, 255} and decoded.alpha.min() == 0
    webp = _gradient().convert("RGBA")
    webp.putalpha(77)
    decoded = decode_image(_save(webp, "WEBP", lossless=True))
    assert decoded.alpha is not None and decoded.lossless
    out = encode_image(decoded.rgb, decoded)
    with Image.open(io.BytesIO(out)) as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), np.asarray(webp))


def test_alpha_is_not_added_to_jpeg_and_follows_a_resize(photo: Image.Image) -> None:
    rgba = photo.convert("RGBA")
    decoded = decode_image(_save(rgba, "PNG"))
    small = np.asarray(photo.resize((150, 200)))
    with Image.open(io.BytesIO(encode_image(small, decoded))) as im:
        assert im.size == (150, 200) and im.mode == "RGBA"


def test_cmyk_jpeg_converts_to_rgb(photo: Image.Image) -> None:
    data = _save(photo.convert("CMYK"), "JPEG", quality=95)
    decoded = decode_image(data)
    assert decoded.mode == "CMYK"
    assert decoded.format == "JPEG"
    assert decoded.rgb.shape == (400, 300, 3)
    diff = np.abs(decoded.rgb.astype(int) - np.asarray(photo, dtype=int)).mean()
    assert diff < 4.0  # an inverted (Adobe) CMYK decode would be off by ~100
    out = encode_image(decoded.rgb, decoded)
    with Image.open(io.BytesIO(out)) as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info


def test_16_bit_grey_png_and_tiff() -> None:
    arr = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)
    for fmt in ("PNG", "TIFF"):
        decoded = decode_image(_save(Image.fromarray(arr), fmt))
        assert decoded.bit_depth == 16, fmt
        assert decoded.mode.startswith("I"), fmt
        expected = np.round(arr / 257.0).astype(np.uint8)
        np.testing.assert_array_equal(decoded.rgb[..., 0], expected)
        np.testing.assert_array_equal(decoded.rgb[..., 2], expected)


def test_48_bit_rgb_png() -> None:
    h, w = 16, 20
    rgb16 = (np.random.default_rng(0).integers(0, 65536, (h, w, 3))).astype(">u2")
    raw = b"".join(b"\x00" + rgb16[y].tobytes() for y in range(h))
    decoded = decode_image(_png(w, h, 16, 2, raw))
    assert decoded.bit_depth == 16
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (h, w, 3)
    assert np.abs(decoded.rgb.astype(int) - (rgb16.astype(int) >> 8)).max() <= 1
    out = encode_image(decoded.rgb, decoded)
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "PNG" and im.mode == "RGB"


def test_grey_and_palette_become_rgb() -> None:
    grey = decode_image(_save(_gradient().convert("L"), "JPEG"))
    assert grey.mode == "L" and grey.rgb.shape == (48, 64, 3)
    assert np.array_equal(grey.rgb[..., 0], grey.rgb[..., 1])
    pal = decode_image(_save(_gradient().convert("P"), "PNG"))
    assert pal.mode == "P" and pal.alpha is None and pal.rgb.shape == (48, 64, 3)


def test_camera_mpo_jpeg_is_one_photo(photo: Image.Image) -> None:
    preview = photo.resize((60, 80))
    data = _save(photo, "MPO", save_all=True, append_images=[preview])
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "MPO"
    decoded = decode_image(data)
    assert decoded.format == "JPEG" and decoded.size == (300, 400)
    assert image_info(data).frames == 1


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_round_trip_exactly(fmt: str) -> None:
    src = _gradient()
    decoded = decode_image(_save(src, fmt))
    assert isinstance(decoded, DecodedImage) and decoded.bit_depth == 8
    out = encode_image(decoded.rgb, decoded)
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == fmt
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.asarray(src))


def test_encode_rejects_bad_arrays() -> None:
    decoded = decode_image(_save(_gradient(), "PNG"))
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4), np.uint8), decoded)
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 3), np.float32), decoded)


def test_image_info_is_header_only() -> None:
    data = _png(6000, 4000, 8, 2, None)  # almost no pixel data: decoding would fail
    assert tuple(image_info(data)) == ("PNG", 6000, 4000, 1)
    assert tuple(check_image(data)) == ("PNG", 6000, 4000, 1)
    assert _code(data) == "corrupt_image"
