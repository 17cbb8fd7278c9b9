"""Every kind of bad or unusual input to the protect job gets a clear status, never a crash."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecloak.contract.options import PhotoOutcome, ProtectOptions
from facecloak.images import decode_image
from facecloak.settings import Settings
from models.errors import InvalidModelError
from models.registry import ModelStore
from workers.jobs.protect import protect_photo
from workers.jobs.runtime import Runtime

from .helpers import DEV, TEST, jpeg_bytes, runtime_for

QUICK = ProtectOptions(
    strength="high", verify=False, eot_makeup=False, eot_jpeg=False, eot_rescale=False
)
"""A short attack that still reaches its margin (8 steps on FACE): without verification an
unconverged face fails the photo (``protection_incomplete``)."""
STRONG_NO_EOT = ProtectOptions(
    strength="strong", verify=False, eot_makeup=False, eot_jpeg=False, eot_rescale=False
)
FACE = DEV / "img11.jpg"  # 600x800, one face
_RUNTIME: list[Runtime] = []


@pytest.fixture(autouse=True)
def _runtime(settings: Settings, model_store: ModelStore) -> None:
    if not DEV.is_dir():
        pytest.skip(f"shared face photos not found at {DEV}")
    _RUNTIME[:] = [runtime_for(settings, model_store)]


def protect(data: bytes, filename: str, options: ProtectOptions) -> PhotoOutcome:
    return protect_photo(data, filename, options, _RUNTIME[0])


def _face_rgb() -> np.ndarray:
    return decode_image(FACE.read_bytes()).rgb


def _failed_code(data: bytes, options: ProtectOptions = QUICK) -> str:
    out = protect(data, "x", options)
    assert out.status in ("failed", "no_face") and out.output is None
    assert out.error is not None and out.error.message
    assert out.report["error"]["code"] == out.error.code
    return out.error.code


def test_an_attack_short_of_its_margin_is_not_protected_without_verification() -> None:
    short = QUICK.model_copy(update={"steps": 1})
    out = protect(FACE.read_bytes(), "face.jpg", short)
    assert out.status == "failed" and out.output is None and out.error is not None
    assert out.error.code == "protection_incomplete" and "[1]" in out.error.message
    assert out.report["faces"][0]["converged"] is False and not out.report.get("verification")


def test_not_an_image() -> None:
    assert _failed_code(b"%PDF-1.4 definitely not a photo") == "not_an_image"


def test_truncated_jpeg() -> None:
    data = FACE.read_bytes()
    assert _failed_code(data[: len(data) // 2]) == "corrupt_image"


def test_decompression_bomb_is_refused_from_the_header() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    assert _failed_code(png + chunk(b"IEND", b"")) == "too_many_pixels"


def test_animated_png() -> None:
    rgb = _face_rgb()
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    assert _failed_code(buf.getvalue()) == "animated_image"


def test_gif_is_not_a_photo_format() -> None:
    buf = io.BytesIO()
    Image.fromarray(_face_rgb()).convert("P").save(buf, "GIF")
    assert _failed_code(buf.getvalue()) == "unsupported_format"


def test_photo_without_a_face_is_not_returned_as_protected() -> None:
    noise = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = protect(jpeg_bytes(noise), "noise.jpg", QUICK)
    assert out.status == "no_face" and out.output is None and out.error.code == "no_face"


def test_faces_below_the_minimum_size() -> None:
    small = Image.fromarray(_face_rgb()).resize((150, 200))
    out = protect(
        jpeg_bytes(np.asarray(small)), "small.jpg", QUICK.model_copy(update={"min_face_size": 120})
    )
    assert out.status == "no_face" and out.error.code == "faces_too_small"
    assert out.report["faces_too_small"] >= 1


def test_unknown_model_name() -> None:
    opts = QUICK.model_copy(update={"surrogates": ["w600k_mbf", "no_such_model"]})
    assert _failed_code(FACE.read_bytes(), opts) == "unknown_model"


def test_detector_is_not_a_recognizer() -> None:
    opts = QUICK.model_copy(update={"surrogates": ["yunet"]})
    assert _failed_code(FACE.read_bytes(), opts) == "model_error"


def test_exif_rotated_jpeg_keeps_its_displayed_orientation() -> None:
    rgb = _face_rgb()
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_270)  # camera stored it sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    out = protect(buf.getvalue(), "rot.jpg", QUICK)
    assert out.status == "protected" and out.output is not None
    back = Image.open(io.BytesIO(out.output))
    assert back.size == (rgb.shape[1], rgb.shape[0])  # upright, as displayed
    assert not back.getexif()  # orientation baked in, metadata gone


def test_png_with_alpha_keeps_alpha_and_format() -> None:
    data = (TEST / "alex_lacamoire__alex-lacamoire.png").read_bytes()
    src = Image.open(io.BytesIO(data))
    out = protect(data, "a.png", QUICK)
    assert out.status == "protected" and out.output is not None
    back = Image.open(io.BytesIO(out.output))
    assert back.format == "PNG" and back.size == src.size
    assert np.array_equal(np.asarray(back.getchannel("A")), np.asarray(src.getchannel("A")))


def test_sixteen_bit_png() -> None:
    rgb16 = _face_rgb()[..., 0].astype(np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(rgb16).save(buf, "PNG")
    out = protect(buf.getvalue(), "g16.png", QUICK)
    assert out.status == "protected" and Image.open(io.BytesIO(out.output)).format == "PNG"


def test_cmyk_jpeg() -> None:
    buf = io.BytesIO()
    Image.fromarray(_face_rgb()).convert("CMYK").save(buf, "JPEG", quality=95)
    out = protect(buf.getvalue(), "cmyk.jpg", QUICK)
    assert out.status == "protected"
    assert Image.open(io.BytesIO(out.output)).format == "JPEG"


def test_arcface_onnx_with_the_wrong_input_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from models.registry import ModelStore
    from models.user_models import add_user_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)
    with pytest.raises(InvalidModelError, match="112"):
        add_user_model("bad-arcface", path, ModelStore(tmp_path / "cache"))


def test_grey_photo_stays_grey_and_keeps_its_mode() -> None:
    grey = Image.fromarray(_face_rgb()).convert("L")
    buf = io.BytesIO()
    grey.save(buf, "JPEG", quality=95)
    out = protect(buf.getvalue(), "grey.jpg", STRONG_NO_EOT)
    assert out.status == "protected" and out.output is not None
    back = Image.open(io.BytesIO(out.output))
    assert back.mode == "L" and back.format == "JPEG"
    rgb = np.asarray(back.convert("RGB"))
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    src = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=np.int16)
    assert np.abs(np.asarray(back, dtype=np.int16) - src).max() > 0  # it was cloaked


def test_sixteen_bit_grey_png_stays_sixteen_bit_grey() -> None:
    grey16 = _face_rgb()[..., 0].astype(np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(grey16).save(buf, "PNG")
    out = protect(buf.getvalue(), "g16.png", STRONG_NO_EOT)
    assert out.status == "protected" and out.output is not None
    back = Image.open(io.BytesIO(out.output))
    assert back.mode.startswith("I") and back.format == "PNG"
