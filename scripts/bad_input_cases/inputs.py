"""The bad inputs, generated in memory, and the readable photo sent beside them."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 120, 90)) -> bytes:
    """A small flat PNG (a valid photo without a face)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def noise_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A noise JPEG (stands in for a photo when ``--faces`` has none)."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def jpeg_header_cut(jpeg: bytes) -> bytes:
    """The JPEG cut before its frame header (SOF): the header itself is incomplete."""
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = jpeg.find(marker, 2)
        if at > 0:
            return jpeg[:at]
    return jpeg[:64]


def jpeg_scan_cut(jpeg: bytes) -> bytes:
    """The JPEG cut halfway through its scan data: the header is whole, the pixels are not."""
    start = jpeg.find(b"\xff\xda")
    return jpeg[: start + (len(jpeg) - start) // 2]


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (32, 32), 1).save(buf, "GIF")
    return buf.getvalue()


def animated_png() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(side: int) -> bytes:
    """A real decompression bomb: a 1-bit ``side`` x ``side`` PNG of zeros, a few KB packed."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def zip_of(entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]], deflate: bool = False) -> bytes:
    """A zip of (name or ZipInfo, bytes) entries."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buf.getvalue()


def symlink_zip() -> bytes:
    link = zipfile.ZipInfo("photo.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_of([(link, b"/etc/passwd")])


def encrypted_zip() -> bytes:
    """A zip whose one entry is flagged encrypted (bit 0 of the flags, set in the local and
    the central header: ``zipfile`` clears it when writing)."""
    data = bytearray(zip_of([("photo.png", png())]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.find(signature) + offset] |= 0x1
    return bytes(data)


def pickled_npz() -> bytes:
    """An npz whose ``x`` holds pickled objects (a loader with pickles on runs code)."""
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    return buf.getvalue()


def tiny_onnx() -> bytes | None:
    """A valid 2-class ONNX classifier of [N,1,8,8] (None without the ``onnx`` package):
    lets bad data reach the checks that run after the model loads."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    weights = [
        numpy_helper.from_array(np.zeros((64, 2), np.float32), "w"),
        numpy_helper.from_array(np.zeros((2,), np.float32), "b"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "w", "b"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def first_jpeg(folder: Path) -> tuple[str, bytes] | None:
    """(name, bytes) of the first JPEG in ``folder``, read now, or None."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            return path.name, path.read_bytes()
    return None
