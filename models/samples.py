"""Sample photos the project provides itself, pinned by sha256 like the models.

The quickstart (``facecloak protect --sample``) and the browser page's instructions use a
photo that comes from a package on PyPI, so they run on any machine without our test
photos: NASA's portrait of astronaut Eileen Collins that scikit-image ships as
``skimage/data/astronaut.png`` (public domain). It is taken from the installed
scikit-image when that holds the pinned file, otherwise from the pinned wheel through the
model store's wheel cache, and is checked against its sha256 either way.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.errors import ChecksumError, ModelUnavailableError
from models.registry import ModelStore, _extract, sha256_file


@dataclass(frozen=True)
class SampleSpec:
    """A sample photo: a file inside a PyPI package, pinned by sha256."""

    name: str
    filename: str
    sha256: str
    package: str
    version: str
    member: str
    licence: str
    credit: str

    @property
    def source(self) -> str:
        """Where the file comes from, as ``pypi:package==version!member``."""
        return f"pypi:{self.package}=={self.version}!{self.member}"


ASTRONAUT = SampleSpec(
    name="astronaut",
    filename="astronaut.png",
    sha256="88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    package="scikit-image",
    version="0.26.0",
    member="skimage/data/astronaut.png",
    licence="public domain (NASA; no known copyright restrictions)",
    credit="Eileen Collins, NASA astronaut portrait, via scikit-image sample data",
)
SAMPLES: dict[str, SampleSpec] = {ASTRONAUT.name: ASTRONAUT}


def _installed_copy(spec: SampleSpec) -> Path | None:
    """The member inside the installed package (located without importing it), if present."""
    top, _, rest = spec.member.partition("/")
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    for root in (found.submodule_search_locations or []) if found else []:
        candidate = Path(root) / rest
        if candidate.is_file():
            return candidate
    return None


def _from_wheel(spec: SampleSpec, store: ModelStore, tmp: Path) -> Path:
    return _extract(store.wheel(spec.package, spec.version), spec.member, tmp)


def sample_path(store: ModelStore, name: str = ASTRONAUT.name) -> Path:
    """The verified sample photo ``name``, cached under the model store on first use.

    Raises ``ModelUnavailableError`` when neither the installed package nor the wheel can
    provide it, and ``ChecksumError`` when what they provide is not the pinned file.
    """
    spec = SAMPLES[name]
    dest = Path(store.cache_dir) / "samples" / spec.filename
    if dest.is_file() and sha256_file(dest) == spec.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    installed = _installed_copy(spec)
    if installed is not None and sha256_file(installed) == spec.sha256:
        shutil.copyfile(installed, dest)
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        try:
            got = _from_wheel(spec, store, Path(tmp))
        except Exception as exc:  # pip, network or archive: one error naming the source
            message = f"sample {name!r} unavailable: {spec.source}: {exc}"
            raise ModelUnavailableError(message) from exc
        digest = sha256_file(got)
        if digest != spec.sha256:
            raise ChecksumError(f"{spec.source}: sha256 {digest} != {spec.sha256}")
        partial = dest.with_suffix(dest.suffix + ".part")
        shutil.copyfile(got, partial)
        partial.replace(dest)
    return dest
