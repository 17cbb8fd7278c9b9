"""The labelled data set of an augmentation job: read from a zip or npz, written back the same way.

A zip holds one folder per class (``<class>/<image>``, optionally under one top folder);
folder names are the model's class names (or indices). An npz holds ``x`` (or ``images``)
``[N, H, W]``, ``[N, C, H, W]`` or ``[N, H, W, C]``, uint8 or floats in [0, 1], and ``y``
(or ``labels``) class indices. Every refusal is an :class:`AugmentInputError` with a code.
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.jobs import decode_budget
from workers.jobs.decode_budget import DecodeBudget

MAX_ENTRY_BYTES = 16 * 1024 * 1024
MAX_PIXELS = 1024 * 1024
MAX_DECODED_BYTES = decode_budget.MAX_DECODED_BYTES
"""The most a data set may take once decoded (zip: declared sizes of the images read so far,
checked before each is decoded; npz: its arrays)."""
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class AugmentInputError(ValueError):
    """Unusable input: ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class DataSet:
    """Images ``[N, C, H, W]`` float32 in [0, 1] (8-bit values), labels, and their sources."""

    x: np.ndarray
    y: np.ndarray
    names: list[str]
    layout: str  # "zip" or "npz"
    folders: dict[int, str] = field(default_factory=dict)
    """zip: class index -> folder name."""
    npz_format: tuple[str, str] = ("nchw", "uint8")
    """npz: the input's axes ("nhw", "nchw", "nhwc") and dtype, for writing back."""


def _safe_member(name: str) -> str:
    """The member path, refusing absolute paths and ``..`` (paths outside the archive)."""
    norm = name.replace("\\", "/")
    parts = norm.split("/")
    if norm.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise AugmentInputError("unsafe_path", f"the zip entry {name!r} points outside the archive")
    return posixpath.normpath(norm)


def _class_index(folder: str, names: list[str]) -> int:
    if folder in names:
        return names.index(folder)
    if folder.isdigit() and int(folder) < len(names):
        return int(folder)
    raise AugmentInputError(
        "unknown_label",
        f"class folder {folder!r} is not a class of the model ({len(names)} classes)",
    )


def _decode(data: bytes, name: str, channels: int, budget: DecodeBudget) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise AugmentInputError("image_too_large", f"{name} has too many pixels")
            budget.charge(name, img.width, img.height, channels)
            array = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    except AugmentInputError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise AugmentInputError("corrupt_image", f"cannot read {name}: {exc}") from exc
    return array[None] if array.ndim == 2 else np.transpose(array, (2, 0, 1))


def read_zip(data: bytes, names: list[str], channels: int, limit: int) -> DataSet:
    """A folder-per-class zip as a :class:`DataSet` (images not yet checked against a model)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise AugmentInputError("invalid_data", "the data set is not a zip") from exc
    with archive:
        infos = archive.infolist()
        paths = [_safe_member(i.filename) for i in infos]
        files = [
            (info, path)
            for info, path in zip(infos, paths, strict=True)
            if not info.is_dir()
            and not any(p.startswith((".", "__MACOSX")) for p in path.split("/"))
        ]
        if len(files) > limit:
            raise AugmentInputError("too_many_images", f"{len(files)} files; the limit is {limit}")
        dirs = {p.rstrip("/") for i, p in zip(infos, paths, strict=True) if i.is_dir()}
        tops = {p.split("/")[0] for _, p in files}
        strip = len(tops) == 1 and all(p.count("/") >= 2 for _, p in files)
        images, labels, members = [], [], []
        folders: dict[int, str] = {}
        budget = DecodeBudget(MAX_DECODED_BYTES, lambda msg: AugmentInputError("too_large", msg))
        for info, path in files:
            parts = path.split("/")[1:] if strip else path.split("/")
            if len(parts) != 2 or not parts[1].lower().endswith(_IMAGE_SUFFIXES):
                raise AugmentInputError(
                    "invalid_layout", f"{info.filename}: expected <class folder>/<image file>"
                )
            if info.file_size > MAX_ENTRY_BYTES:
                raise AugmentInputError("image_too_large", f"{info.filename} is too large")
            label = _class_index(parts[0], names)
            folders[label] = parts[0]
            images.append(_decode(archive.read(info), info.filename, channels, budget))
            labels.append(label)
            members.append(info.filename)
    for folder in dirs:
        parts = folder.split("/")[1:] if strip else folder.split("/")
        if len(parts) == 1 and parts[0] and parts[0] not in folders.values():
            raise AugmentInputError("empty_class", f"class folder {parts[0]!r} holds no images")
    if not images:
        raise AugmentInputError("invalid_data", "the zip holds no images")
    if len({im.shape for im in images}) != 1:
        raise AugmentInputError("size_mismatch", "the images differ in size")
    x = np.stack(images).astype(np.float32) / 255.0
    return DataSet(x, np.asarray(labels, dtype=np.int64), members, "zip", folders)


def read_npz(data: bytes, classes: int, channels: int, limit: int) -> DataSet:
    """An npz of images and labels as a :class:`DataSet`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as members:
            if sum(i.file_size for i in members.infolist()) > MAX_DECODED_BYTES:
                raise AugmentInputError("too_large", "the npz arrays pass the size limit")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            keys = list(npz.keys())
            xk = next((k for k in ("x", "images") if k in keys), None)
            yk = next((k for k in ("y", "labels") if k in keys), None)
            if xk is None or yk is None:
                raise AugmentInputError("invalid_data", "the npz needs arrays 'x' and 'y'")
            if npz[xk].shape[0] > limit:
                raise AugmentInputError("too_many_images", f"more than {limit} images")
            x, y = np.asarray(npz[xk]), np.asarray(npz[yk])
    except AugmentInputError:
        raise
    except Exception as exc:  # zip, header or pickle refusals
        raise AugmentInputError("invalid_data", f"cannot read the npz: {exc}") from exc
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise AugmentInputError("invalid_data", "'y' must be one integer label per image")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise AugmentInputError("unknown_label", f"labels must lie in [0, {classes})")
    axes = "nhw" if x.ndim == 3 else "nchw"
    if x.ndim == 4 and x.shape[1] != channels and x.shape[-1] == channels:
        x, axes = np.transpose(x, (0, 3, 1, 2)), "nhwc"
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise AugmentInputError("invalid_data", f"'x' has shape {list(x.shape)}")
    dtype = "uint8" if x.dtype == np.uint8 else "float32"
    if dtype == "uint8":
        x = x.astype(np.float32) / 255.0
    elif not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise AugmentInputError("invalid_data", "images must be uint8 or finite floats")
    elif len(x) and (x.min() < 0 or x.max() > 1):
        raise AugmentInputError("invalid_data", "float images must lie in [0, 1]")
    x = np.round(x.astype(np.float32) * 255.0) / 255.0
    names = [str(i) for i in range(len(x))]
    return DataSet(x.astype(np.float32), y.astype(np.int64), names, "npz", {}, (axes, dtype))


def check(ds: DataSet, shape: tuple[int, int, int], classes: int) -> None:
    """Refuse a data set the model cannot take or that cannot be augmented."""
    if tuple(ds.x.shape[1:]) != shape:
        raise AugmentInputError(
            "input_mismatch", f"images are {list(ds.x.shape[1:])}; the model takes {list(shape)}"
        )
    present = np.unique(ds.y)
    if len(present) < 2:
        raise AugmentInputError("one_class", "the data set needs images of at least two classes")
    if present.max() >= classes:
        raise AugmentInputError("unknown_label", "a label is not a class of the model")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Images in [0, 1] as uint8 (rounded)."""
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def png(image: np.ndarray) -> bytes:
    """One ``[C, H, W]`` image in [0, 1] as PNG bytes."""
    from PIL import Image

    array = to_uint8(image)
    img = Image.fromarray(array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write(
    ds: DataSet,
    source: bytes,
    x: np.ndarray,
    y: np.ndarray,
    entries: list[dict[str, Any]],
    class_names: list[str],
) -> dict[str, bytes]:
    """Files of the augmented set (same layout as the input) and ``manifest.json``.

    ``x``/``y`` are the generated images and labels, ``entries`` one manifest row each
    (without its file name, which is filled in here).
    """
    out: dict[str, bytes] = {}
    if ds.layout == "zip":
        with zipfile.ZipFile(io.BytesIO(source)) as archive:
            for member in ds.names:
                out[f"augmented/{member}"] = archive.read(member)
        prefix = posixpath.dirname(posixpath.dirname(ds.names[0].replace("\\", "/")))
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = ds.folders.get(int(label), class_names[int(label)])
            name = posixpath.join(
                "augmented", prefix, folder, f"aug-{i:06d}-{entries[i]['kind']}.png"
            )
            out[name] = png(image)
            entries[i]["file"] = name
    else:
        axes, dtype = ds.npz_format
        full = np.concatenate([ds.x, x]) if len(x) else ds.x
        arr: np.ndarray = to_uint8(full) if dtype == "uint8" else full.astype(np.float32)
        if axes == "nhw":
            arr = arr[:, 0]
        elif axes == "nhwc":
            arr = np.transpose(arr, (0, 2, 3, 1))
        generated = np.zeros(len(full), dtype=bool)
        generated[len(ds.x) :] = True
        buf = io.BytesIO()
        labels = np.concatenate([ds.y, y.astype(np.int64)])
        np.savez_compressed(buf, x=arr, y=labels, generated=generated)
        out["augmented.npz"] = buf.getvalue()
        for i, entry in enumerate(entries):
            entry["index"] = len(ds.x) + i
    out["manifest.json"] = json.dumps({"generated": entries}, indent=1).encode()
    return out
