"""Model registry: pinned hashes, unknown names, tampered files, user-added ArcFace models."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from facecloak.settings import get_settings
from models import registry
from models.errors import UnknownModelError
from models.specs import SPECS


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cache dir; shipped models are found through FACECLOAK_MODEL_DIR."""
    shipped = registry.model_path("w600k_mbf").parent
    monkeypatch.setenv("FACECLOAK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FACECLOAK_MODEL_DIR", str(shipped))
    monkeypatch.setenv("FACECLOAK_ALLOW_DOWNLOAD", "false")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_every_shipped_model_is_pinned_and_available() -> None:
    names = {s.name for s in SPECS}
    assert names == {"w600k_mbf", "sface", "facenet", "yunet", "scrfd_500m", "2d106det"}
    for spec in SPECS:
        assert len(spec.sha256) == 64 and spec.licence and spec.sources
        path = registry.model_path(spec.name)
        assert registry.sha256_file(path) == spec.sha256


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="w600k_mbf"):
        registry.get_spec("arcface_r1000")


def test_a_tampered_file_in_the_model_dir_is_not_used(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = isolated_cache / "bad"
    bad.mkdir()
    (bad / "w600k_mbf.onnx").write_bytes(b"not the model")
    monkeypatch.setenv("FACECLOAK_MODEL_DIR", str(bad))
    get_settings.cache_clear()
    with pytest.raises(Exception, match="downloads are disabled"):
        registry.model_path("w600k_mbf")


def test_user_arcface_model_is_checked_and_listed(isolated_cache: Path) -> None:
    from models.recognizers import load_recognizer
    from models.user_models import add_user_model

    mine = isolated_cache / "my_arcface.onnx"
    shutil.copyfile(registry.model_path("w600k_mbf"), mine)
    spec = add_user_model("my-arcface", mine)
    assert spec.embedding_size == 512
    rows = {r.name: r for r in registry.list_models()}
    assert rows["my-arcface"].available and "user supplied" in rows["my-arcface"].licence
    rec = load_recognizer("my-arcface")
    assert rec.spec.normalization == "arcface"
    mine.write_bytes(b"changed")
    assert not registry.is_available(registry.get_spec("my-arcface"))
