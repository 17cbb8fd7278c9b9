"""Model registry: pinned hashes, unknown names, tampered files, user-added ArcFace models."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import registry
from models.errors import UnknownModelError
from models.registry import ModelStore
from models.specs import SPECS


@pytest.fixture
def isolated_store(tmp_path: Path, model_store: ModelStore) -> Iterator[ModelStore]:
    """A fresh cache dir, downloads off; shipped models are found through ``model_dir``."""
    shipped = model_store.path("w600k_mbf").parent
    yield ModelStore(tmp_path / "cache", model_dir=shipped, allow_download=False)


def test_every_shipped_model_is_pinned_and_available(model_store: ModelStore) -> None:
    names = {s.name for s in SPECS}
    assert names == {
        "w600k_mbf", "sface", "facenet", "yunet", "scrfd_500m", "2d106det",
        "dlib_resnet", "dlib_5pt",
    }  # fmt: skip
    for spec in SPECS:
        assert len(spec.sha256) == 64 and spec.licence and spec.sources
        path = model_store.path(spec.name)
        assert registry.sha256_file(path) == spec.sha256


def test_unknown_model_lists_the_known_ones(model_store: ModelStore) -> None:
    with pytest.raises(UnknownModelError, match="w600k_mbf"):
        model_store.spec("arcface_r1000")


def test_a_tampered_file_in_the_model_dir_is_not_used(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "w600k_mbf.onnx").write_bytes(b"not the model")
    store = ModelStore(tmp_path / "cache", model_dir=bad, allow_download=False)
    with pytest.raises(Exception, match="downloads are disabled"):
        store.path("w600k_mbf")


def test_two_stores_do_not_share_user_models(isolated_store: ModelStore, tmp_path: Path) -> None:
    other = ModelStore(tmp_path / "other", allow_download=False)
    mine = tmp_path / "my_arcface.onnx"
    shutil.copyfile(isolated_store.path("w600k_mbf"), mine)
    isolated_store.save_user_spec(registry.user_spec("mine", mine, registry.sha256_file(mine), 512))
    assert isolated_store.spec("mine").family == "arcface-user"
    with pytest.raises(UnknownModelError):
        other.spec("mine")


def test_user_arcface_model_is_checked_and_listed(isolated_store: ModelStore) -> None:
    from models.recognizers import load_recognizer
    from models.user_models import add_user_model

    mine = isolated_store.cache_dir.parent / "my_arcface.onnx"
    shutil.copyfile(isolated_store.path("w600k_mbf"), mine)
    spec = add_user_model("my-arcface", mine, isolated_store)
    assert spec.embedding_size == 512
    rows = {r.name: r for r in isolated_store.statuses()}
    assert rows["my-arcface"].available and "user supplied" in rows["my-arcface"].licence
    rec = load_recognizer("my-arcface", isolated_store)
    assert rec.spec.normalization == "arcface"
    mine.write_bytes(b"changed")
    assert not isolated_store.is_available(isolated_store.spec("my-arcface"))
