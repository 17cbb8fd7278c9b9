"""The scan's input: a zip bundle of the model, an optional reference and optional samples.

Every problem is a :class:`ScanInputError` with a machine-readable ``code``: a bundle that
is not a zip or lacks ``model.onnx``, models that cannot be used (the codes of
:mod:`models.classifier`), a reference that does not match the model, sample files that
cannot be read or do not match the model's input, samples that would take more than
:data:`MAX_DECODED_BYTES` once decoded (``samples_too_large``, checked from each image's
declared size before it is decoded).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facecloak.contract.backdoor import BUNDLE_MODEL, BUNDLE_REFERENCE, BUNDLE_SAMPLES, make_bundle
from workers.jobs import decode_budget
from workers.jobs.decode_budget import DecodeBudget

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ScanInputError", "ScanInputs", "decode_samples", "make_bundle", "read_bundle"]

MAX_SAMPLES = 1024
MAX_ENTRY_BYTES = 256 * 1024 * 1024
MAX_SAMPLE_BYTES = 64 * 1024 * 1024
MAX_SAMPLE_PIXELS = 4096 * 4096
MAX_DECODED_BYTES = decode_budget.MAX_DECODED_BYTES
"""The most the samples may take once decoded (zip: the declared sizes of its images, as
float32; npz: the declared sizes of its arrays)."""


class ScanInputError(ValueError):
    """Unusable scan input: ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ScanInputs:
    """The files of one scan."""

    model: bytes
    reference: bytes | None = None
    samples: bytes | None = None
    samples_name: str = ""


def _entry(archive: zipfile.ZipFile, name: str, limit: int) -> bytes | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        raise ScanInputError("file_too_large", f"{name} is {info.file_size} bytes (limit {limit})")
    return archive.read(info)


def read_bundle(data: bytes) -> ScanInputs:
    """The files of a bundle; ``invalid_bundle`` when it is not one."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ScanInputError("invalid_bundle", "the scan bundle is not a zip") from exc
    with archive:
        model = _entry(archive, BUNDLE_MODEL, MAX_ENTRY_BYTES)
        if model is None:
            raise ScanInputError("invalid_bundle", f"the bundle has no {BUNDLE_MODEL}")
        reference = _entry(archive, BUNDLE_REFERENCE, MAX_ENTRY_BYTES)
        for name in BUNDLE_SAMPLES:
            samples = _entry(archive, name, MAX_SAMPLE_BYTES)
            if samples is not None:
                return ScanInputs(model, reference, samples, name)
    return ScanInputs(model, reference)


def _budget() -> DecodeBudget:
    return DecodeBudget(MAX_DECODED_BYTES, lambda msg: ScanInputError("samples_too_large", msg))


def _from_npz(data: bytes) -> np.ndarray:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as members:
            declared = sum(i.file_size for i in members.infolist())
        _budget().charge_bytes("the npz arrays", declared)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            keys = list(npz.keys())
            key = next(
                (k for k in ("images", "x", "samples") if k in keys), keys[0] if keys else ""
            )
            if not key:
                raise ScanInputError("invalid_samples", "the npz file holds no array")
            return np.asarray(npz[key])
    except ScanInputError:
        raise
    except Exception as exc:  # zip, header or pickle refusals
        raise ScanInputError("invalid_samples", f"cannot read the npz samples: {exc}") from exc


def _open_sample(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Image.Image:
    """One sample image opened lazily (header read, pixels not decoded), at most 4096x4096."""
    from PIL import Image

    if info.file_size > 16 * 1024 * 1024:
        raise ScanInputError("invalid_samples", f"{info.filename} is too large")
    img = Image.open(io.BytesIO(archive.read(info)))
    img.draft(None, (4096, 4096))
    if img.width * img.height > MAX_SAMPLE_PIXELS:
        img.close()
        raise ScanInputError("invalid_samples", f"{info.filename} is too large")
    return img


def _from_zip(data: bytes, channels: int) -> np.ndarray:
    images = []
    budget = _budget()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            if len(infos) > MAX_SAMPLES:
                raise ScanInputError(
                    "invalid_samples", f"{len(infos)} sample files; give 1 to {MAX_SAMPLES}"
                )
            for info in infos:  # every declared size first: nothing is decoded past the cap
                with _open_sample(archive, info) as img:
                    budget.charge(info.filename, img.width, img.height, channels)
            for info in infos:
                with _open_sample(archive, info) as img:
                    images.append(np.asarray(img.convert("L" if channels == 1 else "RGB")))
    except ScanInputError:
        raise
    except Exception as exc:
        raise ScanInputError("invalid_samples", f"cannot read the sample images: {exc}") from exc
    if not images or len({im.shape for im in images}) != 1:
        raise ScanInputError("invalid_samples", "the sample images are missing or differ in size")
    return np.stack(images)


def decode_samples(inputs: ScanInputs, shape: tuple[int, int, int]) -> np.ndarray | None:
    """Samples as ``[N, C, H, W]`` float32 in [0, 1] matching ``shape``; None without any."""
    if inputs.samples is None:
        return None
    channels = shape[0]
    if inputs.samples_name.endswith(".npz"):
        array = _from_npz(inputs.samples)
    else:
        array = _from_zip(inputs.samples, channels)
    if array.ndim == 3:
        array = array[:, None] if channels == 1 else array
    if array.ndim == 4 and array.shape[1] != channels and array.shape[-1] == channels:
        array = np.transpose(array, (0, 3, 1, 2))
    if array.ndim != 4 or tuple(array.shape[1:]) != shape:
        raise ScanInputError(
            "samples_mismatch",
            f"samples have shape {list(array.shape[1:])} per image; the model takes {list(shape)}",
        )
    if len(array) > MAX_SAMPLES or len(array) == 0:
        raise ScanInputError("invalid_samples", f"give 1 to {MAX_SAMPLES} samples")
    if array.dtype == np.uint8:
        return (array.astype(np.float32) / 255.0).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise ScanInputError("invalid_samples", "samples must be uint8 or finite floats")
    if array.min() < 0 or array.max() > 1:
        raise ScanInputError("invalid_samples", "float samples must lie in [0, 1]")
    return np.ascontiguousarray(array, dtype=np.float32)
